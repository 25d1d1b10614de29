; kernel/kernel.asm: the L4 version-2 x86 microkernel of l4emu, main file (DESIGN D6, D7).
;
; One file per concern, joined here; the build (emu/boot/build.py) assembles them in one
; keystone pass and links a higher-half ELF: linked at 0xC0100000, loaded at 0x100000.
;
;   boot.asm      multiboot entry, paging on, kernel_init, boot-task loading
;   desc.asm      GDT (with the DPL-3 call gates), IDT, TSS
;   entry.asm     system-call entries: int 0x30-0x36 and the call gates, dispatch
;   fastpath.asm  IPC fast path: short call / reply_and_wait to a waiting partner
;   ipc.asm       IPC general path, page faults as IPC
;   longipc.asm   long IPC: memory messages, strings, faults during the copy
;   clan.asm      clans and chiefs: redirection, deceit, id_nearest
;   sched.asm     ready lists, switching, timeouts, thread_switch, thread_schedule
;   thread.asm    TCBs, thread creation and deletion, lthread_ex_regs
;   task.asm      task table, task_new (create, delete, clans)
;   space.asm     kernel memory pool, address spaces, mapping flexpages, fpage_unmap
;   irq.asm       8259A, 8254 timer tick
;   trap.asm      exceptions: kill faulting user threads, the KIP trap, kernel faults
;   kip.asm       the kernel info page
;   kdebug.asm    console output, int3 kernel-debugger interface, panic
;
; Virtual memory, the same kernel half in every address space:
;   0x00000000-0xBFFFFFFF  user
;   0xC0000000-0xDFFFFFFF  physical memory 0-512 MiB (4 MiB global supervisor pages)
;   0xE0000000-0xE1FFFFFF  TCBs (absent ones read as a shared zero page)
;   0xFFFFF000             the KIP, user read-only
;
; Conventions: kernel routines take arguments in registers as each says, return in EAX, and
; preserve EBX, ESI, EDI, EBP unless they say otherwise.  The kernel runs with interrupts off
; except in the idle loop; DS = ES = the flat user data selector (no reload on exit), SS = the
; kernel data selector.  The current thread is the TCB holding ESP: ESP & 0xFFFFFC00.

.include "abi.inc"
.include "layout.inc"
.include "boot.asm"
.include "desc.asm"
.include "entry.asm"
.include "fastpath.asm"
.include "ipc.asm"
.include "longipc.asm"
.include "clan.asm"
.include "sched.asm"
.include "thread.asm"
.include "task.asm"
.include "space.asm"
.include "mapdb.asm"
.include "irq.asm"
.include "trap.asm"
.include "kip.asm"
.include "kdebug.asm"

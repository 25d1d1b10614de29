; kernel/entry.asm: how user threads enter the kernel for the seven system calls.
;
; Two entries serve every call (DESIGN D6): the V2 vectors `int 0x30`..`0x36` (interrupt
; gates: the CPU pushes EIP, CS, EFLAGS, ESP, SS and clears IF), and DPL-3 call gates
; (`lcall L4_GATE_*, 0`: the CPU pushes EIP, CS, ESP, SS, runs natively in the emulator and
; leaves EFLAGS alone).  A gate entry first clears EFLAGS (IF, DF, NT, TF, AC; the ipc gate
; only IF, see fastpath.asm) and rewrites its frame into the interrupt frame, with EFLAGS =
; USER_EFLAGS, so that from then on both entries are one path and every thread in the kernel
; has the same frame at the top of its stack:
;
;   TCB + 0x400 - 20:  EIP CS EFLAGS ESP SS      (the return to user mode, by iretd)
;   TCB + 0x400 - 52:  pushad                     (general path; FRAME_SIZE = 52)
;
; ipc goes to the fast path first (fastpath.asm); the other calls save the registers, call
; their handler from syscall_table with EBP = current TCB and EBX = the register frame (the
; handler reads arguments from and writes results to the frame), and return through it.

.section .text
; -- call gates ------------------------------------------------------------------------------
; Each leaves an iret frame and continues at the int entry.  An interrupt can arrive at the
; first instruction (IF is still the user's): irq.asm never switches threads from there.
; (gate_ipc is in fastpath.asm, falling into the fast path.)
gate_id_nearest:
    push 2
    popfd
    push dword ptr [esp]                ; EIP, EIP, CS, ESP, SS -> EIP, CS, EFLAGS, ESP, SS
    mov dword ptr [esp + 4], L4_SEL_UCODE
    mov dword ptr [esp + 8], USER_EFLAGS
    jmp int_id_nearest
gate_fpage_unmap:
    push 2
    popfd
    push dword ptr [esp]
    mov dword ptr [esp + 4], L4_SEL_UCODE
    mov dword ptr [esp + 8], USER_EFLAGS
    jmp int_fpage_unmap
gate_thread_switch:
    push 2
    popfd
    push dword ptr [esp]
    mov dword ptr [esp + 4], L4_SEL_UCODE
    mov dword ptr [esp + 8], USER_EFLAGS
    jmp int_thread_switch
gate_thread_schedule:
    push 2
    popfd
    push dword ptr [esp]
    mov dword ptr [esp + 4], L4_SEL_UCODE
    mov dword ptr [esp + 8], USER_EFLAGS
    jmp int_thread_schedule
gate_lthread_ex_regs:
    push 2
    popfd
    push dword ptr [esp]
    mov dword ptr [esp + 4], L4_SEL_UCODE
    mov dword ptr [esp + 8], USER_EFLAGS
    jmp int_lthread_ex_regs
gate_task_new:
    push 2
    popfd
    push dword ptr [esp]
    mov dword ptr [esp + 4], L4_SEL_UCODE
    mov dword ptr [esp + 8], USER_EFLAGS
    jmp int_task_new

; -- int 0x31-0x36 (0x30 enters fastpath_ipc directly) ---------------------------------------
int_id_nearest:
    pushad
    mov eax, 0
    jmp syscall_general
int_fpage_unmap:
    pushad
    mov eax, 1
    jmp syscall_general
int_thread_switch:
    pushad
    mov eax, 2
    jmp syscall_general
int_thread_schedule:
    pushad
    mov eax, 3
    jmp syscall_general
int_lthread_ex_regs:
    pushad
    mov eax, 4
    jmp syscall_general
int_task_new:
    pushad
    mov eax, 5
    jmp syscall_general

; syscall_general: eax = index into syscall_table; the register frame is at esp.
syscall_general:
    cld
    mov cx, L4_SEL_UDATA                ; the user may have loaded anything into DS/ES
    mov ds, cx
    mov es, cx
    mov ebx, esp
    mov ebp, esp
    and ebp, 0xFFFFFC00
    mov eax, [syscall_table + eax*4]
    call eax
syscall_return:
    popad
    iretd

.section .data
.align 4
syscall_table:
    .long sys_id_nearest, sys_fpage_unmap, sys_thread_switch, sys_thread_schedule
    .long sys_lthread_ex_regs, sys_task_new

/* servers/lib/syscall.S: l4_syscall(struct l4_regs *r, unsigned nr), the one place that enters
 * the kernel (and l4_syscall_via(r, nr, gate), which names the entry instead of using the one
 * l4_init chose).  It loads all seven registers of the V2 ABI (EBP last: it holds r until then),
 * jumps to the stub for the call and the chosen entry (int 0x30+nr, or lcall to the call
 * gate), and stores the seven registers back.  The int and gate stubs are separate labels so
 * tools can put breakpoints on "the kernel entry" (tests/kernel/test_fastpath.py). */
#include <l4/abi.h>

/* The seven registers from the struct l4_regs at EBP, EBP last (it holds the pointer until then). */
    .macro load_regs
    movl 0(%ebp), %eax
    movl 4(%ebp), %ecx
    movl 8(%ebp), %edx
    movl 12(%ebp), %ebx
    movl 16(%ebp), %esi
    movl 20(%ebp), %edi
    movl 24(%ebp), %ebp
    .endm

    .text
    .globl l4_syscall, l4_syscall_via
l4_syscall_via:
    movl 12(%esp), %eax             /* gate? */
    jmp 2f
l4_syscall:
    movl l4_entry_gate, %eax
2:  pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi
    movl 20(%esp), %ebp             /* r */
    movl 24(%esp), %ecx             /* nr */
    cmpl $6, %ecx
    jbe 3f
    xorl %ecx, %ecx                 /* a bad number: never index outside the table */
3:  testl %eax, %eax
    je 1f
    addl $7, %ecx
1:  movl l4_stubs(,%ecx,4), %eax
    pushl %ebp                      /* r, for the way back */
    pushl %eax                      /* the stub: `ret` below jumps there */
    load_regs
    ret

/* l4_syscall_vsrc(r, vsrc_low, vsrc_high): ipc by int 0x30 with the virtual source of a
 * deceiving send at [ESP] and [ESP+4] when the kernel is entered (V2's convention). */
    .globl l4_syscall_vsrc
l4_syscall_vsrc:
    pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi
    movl 20(%esp), %ebp             /* r */
    pushl %ebp                      /* r, for the way back */
    pushl 32(%esp)                  /* vsrc high */
    pushl 32(%esp)                  /* vsrc low */
    load_regs
    int $0x30
    addl $8, %esp
    jmp l4_syscall_store

    .globl l4_int_ipc, l4_int_ipc_return, l4_gate_ipc, l4_gate_ipc_return, l4_syscall_store
l4_int_ipc:
    int $0x30
l4_int_ipc_return:
    jmp l4_syscall_store
l4_int_id_nearest:
    int $0x31
    jmp l4_syscall_store
l4_int_fpage_unmap:
    int $0x32
    jmp l4_syscall_store
l4_int_thread_switch:
    int $0x33
    jmp l4_syscall_store
l4_int_thread_schedule:
    int $0x34
    jmp l4_syscall_store
l4_int_lthread_ex_regs:
    int $0x35
    jmp l4_syscall_store
l4_int_task_new:
    int $0x36
    jmp l4_syscall_store
l4_gate_ipc:
    lcall $L4_GATE_IPC, $0
l4_gate_ipc_return:
    jmp l4_syscall_store
l4_gate_id_nearest:
    lcall $L4_GATE_ID_NEAREST, $0
    jmp l4_syscall_store
l4_gate_fpage_unmap:
    lcall $L4_GATE_FPAGE_UNMAP, $0
    jmp l4_syscall_store
l4_gate_thread_switch:
    lcall $L4_GATE_THREAD_SWITCH, $0
    jmp l4_syscall_store
l4_gate_thread_schedule:
    lcall $L4_GATE_THREAD_SCHEDULE, $0
    jmp l4_syscall_store
l4_gate_lthread_ex_regs:
    lcall $L4_GATE_LTHREAD_EX_REGS, $0
    jmp l4_syscall_store
l4_gate_task_new:
    lcall $L4_GATE_TASK_NEW, $0

l4_syscall_store:
    xchgl %ebp, (%esp)              /* ebp = r; the kernel's EBP on the stack */
    movl %eax, 0(%ebp)
    movl %ecx, 4(%ebp)
    movl %edx, 8(%ebp)
    movl %ebx, 12(%ebp)
    movl %esi, 16(%ebp)
    movl %edi, 20(%ebp)
    popl %eax
    movl %eax, 24(%ebp)
    popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    ret

    .section .rodata
    .balign 4
l4_stubs:
    .long l4_int_ipc, l4_int_id_nearest, l4_int_fpage_unmap, l4_int_thread_switch
    .long l4_int_thread_schedule, l4_int_lthread_ex_regs, l4_int_task_new
    .long l4_gate_ipc, l4_gate_id_nearest, l4_gate_fpage_unmap, l4_gate_thread_switch
    .long l4_gate_thread_schedule, l4_gate_lthread_ex_regs, l4_gate_task_new

/* servers/lib/crt0.S: where lthread 0 of a boot task starts (the ELF entry).  The kernel
 * starts it with every register 0; this sets up the stack, picks the kernel entry (l4_init),
 * runs main() and sleeps for good if it returns. */
#include <l4/abi.h>

    .section .text.start, "ax"
    .globl _start
_start:
    movl $__stack_top, %esp
    call l4_init
    call main
    call l4_sleep_forever

    .bss
    .balign 16
    .globl __stack
__stack:
    .space 16384
    .globl __stack_top
__stack_top:

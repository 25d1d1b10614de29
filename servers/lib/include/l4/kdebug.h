/* servers/lib/include/l4/kdebug.h: the int3 kernel-debugger interface (V2 kdebug.h
 * conventions: int3 followed by `cmp al, op`, or by a jmp over an inline string). */
#ifndef L4_KDEBUG_H
#define L4_KDEBUG_H

#include <l4/abi.h>

#define L4_STR2(x) #x
#define L4_STR(x) L4_STR2(x)

/* Print `text` and enter the kernel debugger (the emulator's debugger, if one is attached). */
#define enter_kdebug(text) \
    __asm__ __volatile__("int3\n\tjmp 1f\n\t.ascii \"" text "\"\n1:")
/* Print `text` only. */
#define kd_display(text) \
    __asm__ __volatile__("int3\n\tnop\n\tjmp 1f\n\t.ascii \"" text "\"\n1:")

static inline void outchar(char c)
{
    __asm__ __volatile__("int3\n\tcmpb $" L4_STR(L4_KDEBUG_OUTCHAR) ", %%al" : : "a"(c));
}
static inline void outstring(const char *s)
{
    __asm__ __volatile__("int3\n\tcmpb $" L4_STR(L4_KDEBUG_OUTSTRING) ", %%al" : : "a"(s) : "memory");
}
static inline void outnstring(const char *s, unsigned len)
{
    __asm__ __volatile__("int3\n\tcmpb $" L4_STR(L4_KDEBUG_OUTNSTRING) ", %%al"
                         : : "a"(s), "b"(len) : "memory");
}
static inline void outhex32(unsigned x)
{
    __asm__ __volatile__("int3\n\tcmpb $" L4_STR(L4_KDEBUG_OUTHEX32) ", %%al" : : "a"(x));
}
static inline void outdec(int x)
{
    __asm__ __volatile__("int3\n\tcmpb $" L4_STR(L4_KDEBUG_OUTDEC) ", %%al" : : "a"(x));
}
static inline int kd_inchar(void)
{
    int c;
    __asm__ __volatile__("int3\n\tcmpb $" L4_STR(L4_KDEBUG_INCHAR) ", %%al" : "=a"(c));
    return c;
}
/* l4emu: end the emulator's run with `status` (sigma0 and the root task only). */
static inline void l4_poweroff(unsigned status)
{
    __asm__ __volatile__("int3\n\tcmpb $" L4_STR(L4_KDEBUG_POWEROFF) ", %%al" : : "a"(status));
}

#endif

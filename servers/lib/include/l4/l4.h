/* servers/lib/include/l4/l4.h: libl4, the C interface to the l4emu L4 V2 kernel.
 *
 * Types and the seven system calls (docs/abi.md), with helpers for the things every server
 * builds: thread IDs, timeouts, flexpages, the KIP.  Constants come from the generated
 * <l4/abi.h> (kernel/abi.toml), so the kernel and the servers cannot disagree.
 *
 * Every call goes through l4_syscall(), which enters the kernel by a DPL-3 call gate when
 * the KIP says the kernel offers them (the fast entry, DESIGN D6) and by int 0x30-0x36
 * otherwise; l4_init() (run by crt0) decides, l4_set_entry() can force either. */
#ifndef L4_L4_H
#define L4_L4_H

#include <stddef.h>
#include <stdint.h>
#include <l4/abi.h>

typedef uint32_t l4_umword_t;
typedef uint32_t l4_timeout_t;
typedef uint32_t l4_fpage_t;
typedef uint32_t l4_msgdope_t;

/* A V2 thread ID: 64 bits, ESI (low) : EDI (high). */
typedef struct { l4_umword_t low, high; } l4_threadid_t;

#define L4_NIL_ID ((l4_threadid_t){0, 0})
#define L4_INVALID_ID ((l4_threadid_t){0xFFFFFFFFu, 0xFFFFFFFFu})
#define L4_SIGMA0_ID ((l4_threadid_t){(L4_SIGMA0_TASK << L4_ID_TASK_SHIFT) | L4_BOOT_VERSION, 0})

/* The registers of a system call, in and out. */
struct l4_regs { l4_umword_t eax, ecx, edx, ebx, esi, edi, ebp; };

enum l4_sysno { L4_SYS_IPC, L4_SYS_ID_NEAREST, L4_SYS_FPAGE_UNMAP, L4_SYS_THREAD_SWITCH,
                L4_SYS_THREAD_SCHEDULE, L4_SYS_LTHREAD_EX_REGS, L4_SYS_TASK_NEW };
enum l4_entry { L4_ENTRY_INT = 0, L4_ENTRY_GATE = 1 };

/* Enter the kernel for call `nr` with all seven registers from `r`; results back in `r`. */
void l4_syscall(struct l4_regs *r, unsigned nr);
/* The same through the entry named: gate != 0 the call gates, else int 0x30+nr. */
void l4_syscall_via(struct l4_regs *r, unsigned nr, int gate);
/* Which entry l4_syscall uses; l4_init() picks the fastest the KIP offers. */
extern int l4_entry_gate;
void l4_init(void);
void l4_set_entry(enum l4_entry e);

/* -- thread IDs -------------------------------------------------------------------------- */
static inline unsigned l4_task_of(l4_threadid_t t) { return (t.low >> L4_ID_TASK_SHIFT) & L4_ID_TASK_MASK; }
static inline unsigned l4_lthread_of(l4_threadid_t t) { return (t.low >> L4_ID_LTHREAD_SHIFT) & L4_ID_LTHREAD_MASK; }
static inline int l4_is_nil(l4_threadid_t t) { return t.low == 0 && t.high == 0; }
static inline int l4_same(l4_threadid_t a, l4_threadid_t b) { return a.low == b.low && a.high == b.high; }
/* The same task and version, another lthread. */
static inline l4_threadid_t l4_sibling(l4_threadid_t t, unsigned lthread)
{
    t.low = (t.low & ~(L4_ID_LTHREAD_MASK << L4_ID_LTHREAD_SHIFT)) | (lthread << L4_ID_LTHREAD_SHIFT);
    return t;
}

/* -- timeouts: t = 4^(15-e) * m microseconds ---------------------------------------------- */
#define L4_TIMEOUT(snd_exp, snd_man, rcv_exp, rcv_man) \
    ((l4_timeout_t)((rcv_exp) | (snd_exp) << 4 | (snd_man) << 16 | (rcv_man) << 24))
/* exponent and mantissa for `us` microseconds (rounded up); us = 0: the zero timeout */
void l4_timeout_parts(unsigned us, unsigned *exp, unsigned *man);
/* L4_IPC_NEVER for either side with us = ~0u */
l4_timeout_t l4_ipc_timeout(unsigned snd_us, unsigned rcv_us);

/* -- flexpages ---------------------------------------------------------------------------- */
static inline l4_fpage_t l4_fpage(l4_umword_t base, unsigned log2size, int write, int grant)
{
    return (base & ~((log2size >= 32) ? 0xFFFFFFFFu : ((1u << log2size) - 1))) |
           (log2size << L4_FPAGE_SIZE_SHIFT) | (write ? L4_FPAGE_WRITE : 0) |
           (grant ? L4_FPAGE_GRANT : 0);
}
/* A receive descriptor accepting a mapping into the window `fp` (add L4_IPC_OPEN_IPC for an
 * open wait). */
static inline l4_umword_t l4_rcv_window(l4_fpage_t fp) { return (fp & ~3u) | L4_IPC_RMAP; }

/* -- IPC: each returns the error code (dope & L4_IPC_ERROR_MASK), 0 on success ------------ */
int l4_ipc_call(l4_threadid_t dest, l4_umword_t snd_desc, l4_umword_t w0, l4_umword_t w1,
                l4_umword_t rcv_desc, l4_umword_t *r0, l4_umword_t *r1, l4_timeout_t timeout,
                l4_msgdope_t *dope);
int l4_ipc_reply_and_wait(l4_threadid_t dest, l4_umword_t snd_desc, l4_umword_t w0,
                          l4_umword_t w1, l4_threadid_t *src, l4_umword_t rcv_desc,
                          l4_umword_t *r0, l4_umword_t *r1, l4_timeout_t timeout,
                          l4_msgdope_t *dope);
int l4_ipc_send(l4_threadid_t dest, l4_umword_t snd_desc, l4_umword_t w0, l4_umword_t w1,
                l4_timeout_t timeout, l4_msgdope_t *dope);
int l4_ipc_wait(l4_threadid_t *src, l4_umword_t rcv_desc, l4_umword_t *r0, l4_umword_t *r1,
                l4_timeout_t timeout, l4_msgdope_t *dope);
int l4_ipc_receive(l4_threadid_t src, l4_umword_t rcv_desc, l4_umword_t *r0, l4_umword_t *r1,
                   l4_timeout_t timeout, l4_msgdope_t *dope);
/* Block for `timeout` (receive from the nil ID); never returns for L4_IPC_NEVER. */
int l4_ipc_sleep(l4_timeout_t timeout);
void l4_sleep_forever(void) __attribute__((noreturn));

/* -- clans and chiefs (docs/abi.md) -------------------------------------------------------- */
/* V2's l4_ipc_deceit_ids_t: a chief forwards a message to `dest` as if from `true_src`. */
typedef struct { l4_threadid_t dest, true_src; } l4_ipc_deceit_ids_t;
/* The ipc call of r (by int 0x30) with [ESP], [ESP+4] = vsrc when the kernel is entered: the
 * virtual source of a deceiving send (set L4_IPC_DECEIT in r->eax), as V2's bindings pass it. */
void l4_syscall_vsrc(struct l4_regs *r, l4_umword_t vsrc_low, l4_umword_t vsrc_high);
/* Send as ids.true_src (the kernel ignores the deceit where V2 does not permit it). */
int l4_ipc_send_deceiting(l4_ipc_deceit_ids_t ids, l4_umword_t snd_desc, l4_umword_t w0,
                          l4_umword_t w1, l4_timeout_t timeout, l4_msgdope_t *dope);
/* An open wait (or closed: ids->true_src not nil) telling a chief what was redirected to
 * it: ids->true_src = the source, ids->dest = the intended destination (nil when the
 * message was not redirected, dope without L4_IPC_DOPE_REDIRECTED). */
int l4_ipc_wait_redirect(l4_ipc_deceit_ids_t *ids, l4_umword_t rcv_desc, l4_umword_t *r0,
                         l4_umword_t *r1, l4_timeout_t timeout, l4_msgdope_t *dope);

/* -- the other six ------------------------------------------------------------------------ */
l4_threadid_t l4_myself(void);
int l4_id_nearest(l4_threadid_t dest, l4_threadid_t *nearest);
void l4_fpage_unmap(l4_fpage_t fpage, l4_umword_t mask);
void l4_thread_switch(l4_threadid_t dest);
void l4_yield(void);
/* Returns the old parameter (with the state in bits 16-19), 0xFFFFFFFF on failure. */
l4_umword_t l4_thread_schedule(l4_threadid_t dest, l4_umword_t param,
                               l4_threadid_t *partner, uint64_t *cpu_time_us);
static inline unsigned l4_sched_prio(l4_umword_t p) { return p & L4_SCHED_PRIO_MASK; }
static inline unsigned l4_sched_state(l4_umword_t p) { return (p >> L4_SCHED_STATE_SHIFT) & 0xF; }
/* lthread_ex_regs: ~0u for eip/esp and L4_INVALID_ID for pager/preempter leave them. */
struct l4_exregs { l4_umword_t eflags, eip, esp; l4_threadid_t pager, preempter; };
void l4_lthread_ex_regs(l4_umword_t lthread, l4_umword_t eip, l4_umword_t esp,
                        l4_threadid_t pager, l4_threadid_t preempter, struct l4_exregs *old);
/* l4emu extension: set lthread's exception handler (L4_NIL_ID: none, exceptions kill it;
 * L4_INVALID_ID: unchanged) without cancelling its IPC; returns the old one. */
l4_threadid_t l4_exception_handler(l4_umword_t lthread, l4_threadid_t handler);
/* l4emu extension (docs/abi.md "Thread-local storage"): set lthread's TLS segment, selector
 * L4_SEL_TLS, to `base` and `limit` (a limit word: L4_TLS_LIMIT_MASK bits, | L4_TLS_LIMIT_PAGES
 * to count 4 KiB pages; 0, 0: none; ~0u, ~0u: unchanged) without cancelling its IPC.  *old
 * (if not null) gets the previous base and limit word; a refused base leaves them. */
void l4_tls_set(l4_umword_t lthread, l4_umword_t base, l4_umword_t limit, l4_umword_t old[2]);

/* A V2 message buffer holding an exception message (docs/abi.md, "Exceptions as IPC"):
 * w[L4_EXC_TRAP], w[L4_EXC_ERROR], w[L4_EXC_EIP] ... w[L4_EXC_EDI]. */
struct l4_exc_msg {
    l4_fpage_t rcv_fpage;
    l4_msgdope_t size_dope, snd_dope;
    l4_umword_t w[L4_EXC_FRAME_DWORDS];
};
static inline l4_msgdope_t l4_msg_dwords(unsigned n) { return n << L4_MSG_DOPE_DWORDS_SHIFT; }
/* Receive an exception message from `src` (closed) or anyone (src nil) into m; returns the
 * dope (l4_msg_dwords(L4_EXC_FRAME_DWORDS) when the frame arrived, an error in 0xF0). */
l4_msgdope_t l4_exc_receive(l4_threadid_t *src, struct l4_exc_msg *m, l4_timeout_t timeout);
/* Answer `dest`'s exception: its registers become m->w[L4_EXC_EIP ..]; returns the dope. */
l4_msgdope_t l4_exc_reply(l4_threadid_t dest, struct l4_exc_msg *m, l4_timeout_t timeout);
/* The same, and its TLS segment becomes base and limit (a limit word, as l4_tls_set): a reply
 * of L4_EXC_TLS_DWORDS dwords.  A refused base: SEMSGCUT and nothing changes. */
l4_msgdope_t l4_exc_reply_tls(l4_threadid_t dest, const struct l4_exc_msg *m, l4_umword_t base,
                              l4_umword_t limit, l4_timeout_t timeout);

/* -- long messages (docs/abi.md "Long messages"): a V2 message buffer -------------------
 * The header is followed by the dwords (size_dope.dwords of them) and then the string dopes;
 * dwords 0 and 1 travel in EDX/EBX: the long calls below take them from w[0]/w[1] of the
 * send buffer and store what arrived in w[0]/w[1] of the receive buffer. */
struct l4_msghdr {
    l4_fpage_t rcv_fpage;           /* receive window for a map message into this buffer */
    l4_msgdope_t size_dope;         /* dwords and strings this buffer has room for */
    l4_msgdope_t snd_dope;          /* dwords and strings to send from it */
};
typedef struct { l4_umword_t snd_size, snd_str, rcv_size, rcv_str; } l4_strdope_t;
/* A buffer type with room for D dwords and S strings. */
#define L4_MSGBUF(D, S) \
    struct { struct l4_msghdr h; l4_umword_t w[D]; l4_strdope_t str[(S) ? (S) : 1]; }
static inline l4_msgdope_t l4_msg_dope(unsigned dwords, unsigned strings)
{
    return dwords << L4_MSG_DOPE_DWORDS_SHIFT | strings << L4_MSG_DOPE_STRINGS_SHIFT;
}
static inline unsigned l4_dope_dwords(l4_msgdope_t d) { return d >> L4_MSG_DOPE_DWORDS_SHIFT; }
static inline unsigned l4_dope_strings(l4_msgdope_t d) { return (d >> L4_MSG_DOPE_STRINGS_SHIFT) & 0x1F; }
/* Set up buffer `m` with room for `dwords` dwords and `strings` strings, nothing to send. */
void l4_msg_init(void *m, unsigned dwords, unsigned strings);
/* The words and string dopes of a buffer (the dopes follow size_dope.dwords dwords). */
static inline l4_umword_t *l4_msg_words(void *m) { return (l4_umword_t *)((struct l4_msghdr *)m + 1); }
static inline l4_strdope_t *l4_msg_strdopes(void *m)
{
    return (l4_strdope_t *)(l4_msg_words(m) + l4_dope_dwords(((struct l4_msghdr *)m)->size_dope));
}
/* Send string i of `m`: `len` bytes at `p`.  Receive string i: room for `len` bytes at `p`. */
static inline void l4_msg_snd_string(void *m, unsigned i, const void *p, l4_umword_t len)
{
    l4_msg_strdopes(m)[i].snd_str = (l4_umword_t)(uintptr_t)p;
    l4_msg_strdopes(m)[i].snd_size = len;
}
static inline void l4_msg_rcv_string(void *m, unsigned i, void *p, l4_umword_t len)
{
    l4_msg_strdopes(m)[i].rcv_str = (l4_umword_t)(uintptr_t)p;
    l4_msg_strdopes(m)[i].rcv_size = len;
}
/* Long IPC.  snd: a buffer whose snd_dope says what to send (NULL: nothing to send),
 * rcv: a buffer to receive into (NULL: a short receive); map = 1 makes the send a map
 * message (w[0] send base, w[1] fpage; the receiver's window: its rcv buffer's rcv_fpage).
 * Each returns the error code; *dope (if given) the full result dope. */
int l4_ipc_send_long(l4_threadid_t dest, const void *snd, int map, l4_timeout_t timeout,
                     l4_msgdope_t *dope);
int l4_ipc_call_long(l4_threadid_t dest, const void *snd, void *rcv, l4_timeout_t timeout,
                     l4_msgdope_t *dope);
int l4_ipc_receive_long(l4_threadid_t src, void *rcv, l4_timeout_t timeout, l4_msgdope_t *dope);
int l4_ipc_wait_long(l4_threadid_t *src, void *rcv, l4_timeout_t timeout, l4_msgdope_t *dope);
/* A timeout word with page-fault timeouts: snd_pf for faults in the receiver's space (the
 * sender's), rcv_pf for faults in the sender's space (the receiver's); p: 0 never, 15 zero,
 * else 4^(15-p) microseconds. */
static inline l4_timeout_t l4_timeout_pf(l4_timeout_t t, unsigned snd_pf, unsigned rcv_pf)
{
    return (t & ~0xFF00u) | (rcv_pf & 0xF) << L4_IPC_RCV_PFAULT_SHIFT |
           (snd_pf & 0xF) << L4_IPC_SND_PFAULT_SHIFT;
}

l4_threadid_t l4_task_new(l4_threadid_t task, l4_umword_t mcp_or_chief, l4_umword_t esp,
                          l4_umword_t eip, l4_threadid_t pager);
/* The ID of task number `task` (lthread 0) as the caller would name it as its chief. */
l4_threadid_t l4_task_id(unsigned task);

/* Start lthread `lthread` of this task at fn(arg) on the stack [stack, stack + size);
 * fn must not return (l4_sleep_forever). */
void l4_thread_start(unsigned lthread, void (*fn)(void *), void *arg, void *stack,
                     size_t size, l4_threadid_t pager);
/* Prepare a stack for fn(arg) the same way; returns the initial ESP. */
l4_umword_t l4_stack_prepare(void (*fn)(void *), void *arg, void *stack, size_t size);

/* -- the kernel info page ------------------------------------------------------------------ */
static inline volatile uint8_t *l4_kip(void) { return (volatile uint8_t *)L4_KIP_ADDR; }
static inline uint32_t l4_kip_word(unsigned offset)
{
    return *(volatile uint32_t *)(l4_kip() + offset);
}
/* The microsecond clock in the KIP. */
uint64_t l4_kip_clock(void);
/* The KIP's address the V2 way: `lock; nop` traps and the kernel answers in EAX. */
l4_umword_t l4_kernel_interface(void);

static inline uint64_t l4_rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

#endif

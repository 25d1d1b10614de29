/* servers/lib/libl4.c: the C side of libl4 (l4/l4.h): the V2 register conventions of each
 * system call on top of l4_syscall(), timeouts, thread start-up and the KIP. */
#include <l4/l4.h>

int l4_entry_gate;

void l4_init(void)
{
    /* The fastest entry the kernel offers (DESIGN D6). */
    l4_entry_gate = l4_kip_word(L4_KIP_MAGIC) == L4_KIP_MAGIC_VALUE &&
                    (l4_kip_word(L4_KIP_ENTRY_METHODS) & L4_KIP_ENTRY_GATE) != 0;
}

void l4_set_entry(enum l4_entry e) { l4_entry_gate = (e == L4_ENTRY_GATE); }

/* -- timeouts -------------------------------------------------------------------------------- */
void l4_timeout_parts(unsigned us, unsigned *exp, unsigned *man)
{
    unsigned e = 15;
    uint64_t m = us;
    if (us == 0) {
        *exp = 15;          /* m = 0, e != 0: the zero timeout */
        *man = 0;
        return;
    }
    while (m > 255 && e > 1) {
        m = (m + 3) >> 2;   /* round up: never wait less than asked */
        e--;
    }
    *exp = e;
    *man = (unsigned)m;
}

l4_timeout_t l4_ipc_timeout(unsigned snd_us, unsigned rcv_us)
{
    unsigned se = 0, sm = 0, re = 0, rm = 0;
    if (snd_us != ~0u)
        l4_timeout_parts(snd_us, &se, &sm);
    if (rcv_us != ~0u)
        l4_timeout_parts(rcv_us, &re, &rm);
    return L4_TIMEOUT(se, sm, re, rm);
}

/* -- IPC ------------------------------------------------------------------------------------ */
static int ipc(struct l4_regs *r, l4_msgdope_t *dope)
{
    l4_syscall(r, L4_SYS_IPC);
    if (dope)
        *dope = r->eax;
    return r->eax & L4_IPC_ERROR_MASK;
}

int l4_ipc_call(l4_threadid_t dest, l4_umword_t snd_desc, l4_umword_t w0, l4_umword_t w1,
                l4_umword_t rcv_desc, l4_umword_t *r0, l4_umword_t *r1, l4_timeout_t timeout,
                l4_msgdope_t *dope)
{
    struct l4_regs r = {snd_desc, timeout, w0, w1, dest.low, dest.high,
                        rcv_desc & ~(l4_umword_t)L4_IPC_OPEN_IPC};
    int err = ipc(&r, dope);
    if (r0) *r0 = r.edx;
    if (r1) *r1 = r.ebx;
    return err;
}

int l4_ipc_reply_and_wait(l4_threadid_t dest, l4_umword_t snd_desc, l4_umword_t w0,
                          l4_umword_t w1, l4_threadid_t *src, l4_umword_t rcv_desc,
                          l4_umword_t *r0, l4_umword_t *r1, l4_timeout_t timeout,
                          l4_msgdope_t *dope)
{
    struct l4_regs r = {snd_desc, timeout, w0, w1, dest.low, dest.high,
                        rcv_desc | L4_IPC_OPEN_IPC};
    int err = ipc(&r, dope);
    if (src) { src->low = r.esi; src->high = r.edi; }
    if (r0) *r0 = r.edx;
    if (r1) *r1 = r.ebx;
    return err;
}

int l4_ipc_send(l4_threadid_t dest, l4_umword_t snd_desc, l4_umword_t w0, l4_umword_t w1,
                l4_timeout_t timeout, l4_msgdope_t *dope)
{
    struct l4_regs r = {snd_desc, timeout, w0, w1, dest.low, dest.high,
                        L4_IPC_NIL_DESCRIPTOR};
    return ipc(&r, dope);
}

int l4_ipc_send_deceiting(l4_ipc_deceit_ids_t ids, l4_umword_t snd_desc, l4_umword_t w0,
                          l4_umword_t w1, l4_timeout_t timeout, l4_msgdope_t *dope)
{
    struct l4_regs r = {snd_desc | L4_IPC_DECEIT, timeout, w0, w1, ids.dest.low, ids.dest.high,
                        L4_IPC_NIL_DESCRIPTOR};
    l4_syscall_vsrc(&r, ids.true_src.low, ids.true_src.high);
    if (dope)
        *dope = r.eax;
    return r.eax & L4_IPC_ERROR_MASK;
}

int l4_ipc_wait_redirect(l4_ipc_deceit_ids_t *ids, l4_umword_t rcv_desc, l4_umword_t *r0,
                         l4_umword_t *r1, l4_timeout_t timeout, l4_msgdope_t *dope)
{
    int closed = !l4_is_nil(ids->true_src);
    struct l4_regs r = {L4_IPC_NIL_DESCRIPTOR, timeout, 0, 0, ids->true_src.low,
                        ids->true_src.high, closed ? rcv_desc & ~(l4_umword_t)L4_IPC_OPEN_IPC
                                                   : rcv_desc | L4_IPC_OPEN_IPC};
    int err = ipc(&r, dope);
    ids->true_src.low = r.esi;
    ids->true_src.high = r.edi;
    ids->dest = L4_NIL_ID;
    if (r.eax & L4_IPC_DOPE_REDIRECTED) {       /* also a redirected message cut short */
        ids->dest.low = r.ecx;
        ids->dest.high = r.ebp;
    }
    if (r0) *r0 = r.edx;
    if (r1) *r1 = r.ebx;
    return err;
}

int l4_ipc_wait(l4_threadid_t *src, l4_umword_t rcv_desc, l4_umword_t *r0, l4_umword_t *r1,
                l4_timeout_t timeout, l4_msgdope_t *dope)
{
    struct l4_regs r = {L4_IPC_NIL_DESCRIPTOR, timeout, 0, 0, 0, 0,
                        rcv_desc | L4_IPC_OPEN_IPC};
    int err = ipc(&r, dope);
    if (src) { src->low = r.esi; src->high = r.edi; }
    if (r0) *r0 = r.edx;
    if (r1) *r1 = r.ebx;
    return err;
}

int l4_ipc_receive(l4_threadid_t src, l4_umword_t rcv_desc, l4_umword_t *r0, l4_umword_t *r1,
                   l4_timeout_t timeout, l4_msgdope_t *dope)
{
    struct l4_regs r = {L4_IPC_NIL_DESCRIPTOR, timeout, 0, 0, src.low, src.high,
                        rcv_desc & ~(l4_umword_t)L4_IPC_OPEN_IPC};
    int err = ipc(&r, dope);
    if (r0) *r0 = r.edx;
    if (r1) *r1 = r.ebx;
    return err;
}

int l4_ipc_sleep(l4_timeout_t timeout)
{
    return l4_ipc_receive(L4_NIL_ID, L4_IPC_SHORT_MSG, 0, 0, timeout, 0);
}

void l4_sleep_forever(void)
{
    for (;;)
        l4_ipc_sleep(L4_IPC_NEVER);
}

/* -- the other six ------------------------------------------------------------------------- */
l4_threadid_t l4_myself(void)
{
    struct l4_regs r = {0};
    l4_syscall(&r, L4_SYS_ID_NEAREST);
    return (l4_threadid_t){r.esi, r.edi};
}

int l4_id_nearest(l4_threadid_t dest, l4_threadid_t *nearest)
{
    struct l4_regs r = {0, 0, 0, 0, dest.low, dest.high, 0};
    l4_syscall(&r, L4_SYS_ID_NEAREST);
    if (nearest) { nearest->low = r.esi; nearest->high = r.edi; }
    return (int)r.eax;
}

void l4_fpage_unmap(l4_fpage_t fpage, l4_umword_t mask)
{
    struct l4_regs r = {fpage, mask, 0, 0, 0, 0, 0};
    l4_syscall(&r, L4_SYS_FPAGE_UNMAP);
}

void l4_thread_switch(l4_threadid_t dest)
{
    struct l4_regs r = {0, 0, 0, 0, dest.low, dest.high, 0};
    l4_syscall(&r, L4_SYS_THREAD_SWITCH);
}

void l4_yield(void) { l4_thread_switch(L4_NIL_ID); }

l4_umword_t l4_thread_schedule(l4_threadid_t dest, l4_umword_t param,
                               l4_threadid_t *partner, uint64_t *cpu_time_us)
{
    struct l4_regs r = {param, 0, 0, 0xFFFFFFFFu, dest.low, dest.high, 0xFFFFFFFFu};
    l4_syscall(&r, L4_SYS_THREAD_SCHEDULE);
    if (partner) { partner->low = r.esi; partner->high = r.edi; }
    if (cpu_time_us) *cpu_time_us = ((uint64_t)r.edx << 32) | r.ecx;
    return r.eax;
}

void l4_lthread_ex_regs(l4_umword_t lthread, l4_umword_t eip, l4_umword_t esp,
                        l4_threadid_t pager, l4_threadid_t preempter, struct l4_exregs *old)
{
    struct l4_regs r = {lthread, esp, eip, preempter.low, pager.low, pager.high,
                        preempter.high};
    l4_syscall(&r, L4_SYS_LTHREAD_EX_REGS);
    if (old) {
        old->eflags = r.eax;
        old->esp = r.ecx;
        old->eip = r.edx;
        old->pager = (l4_threadid_t){r.esi, r.edi};
        old->preempter = (l4_threadid_t){r.ebx, r.ebp};
    }
}

l4_threadid_t l4_exception_handler(l4_umword_t lthread, l4_threadid_t handler)
{
    struct l4_regs r = {lthread | L4_EXREGS_EXC_HANDLER | L4_EXREGS_NO_CANCEL, ~0u, ~0u,
                        handler.low, ~0u, ~0u, handler.high};
    l4_syscall(&r, L4_SYS_LTHREAD_EX_REGS);
    return (l4_threadid_t){r.ebx, r.ebp};
}

void l4_tls_set(l4_umword_t lthread, l4_umword_t base, l4_umword_t limit, l4_umword_t old[2])
{
    struct l4_regs r = {lthread | L4_EXREGS_TLS | L4_EXREGS_NO_CANCEL, ~0u, ~0u, base, ~0u, ~0u,
                        limit};
    l4_syscall(&r, L4_SYS_LTHREAD_EX_REGS);
    if (old) {
        old[0] = r.ebx;
        old[1] = r.ebp;
    }
}

l4_msgdope_t l4_exc_receive(l4_threadid_t *src, struct l4_exc_msg *m, l4_timeout_t timeout)
{
    m->size_dope = l4_msg_dwords(L4_EXC_FRAME_DWORDS);
    m->snd_dope = 0;
    int open = l4_is_nil(*src);
    struct l4_regs r = {L4_IPC_NIL_DESCRIPTOR, timeout, 0, 0, src->low, src->high,
                        (l4_umword_t)(uintptr_t)m | (open ? L4_IPC_OPEN_IPC : 0)};
    l4_syscall(&r, L4_SYS_IPC);
    *src = (l4_threadid_t){r.esi, r.edi};
    m->w[0] = r.edx;            /* (also in the buffer when the frame arrived) */
    m->w[1] = r.ebx;
    return r.eax;
}

l4_msgdope_t l4_exc_reply(l4_threadid_t dest, struct l4_exc_msg *m, l4_timeout_t timeout)
{
    m->snd_dope = l4_msg_dwords(L4_EXC_FRAME_DWORDS);
    struct l4_regs r = {(l4_umword_t)(uintptr_t)m, timeout, m->w[0], m->w[1], dest.low,
                        dest.high, L4_IPC_NIL_DESCRIPTOR};
    l4_syscall(&r, L4_SYS_IPC);
    return r.eax;
}

void l4_msg_init(void *m, unsigned dwords, unsigned strings)
{
    struct l4_msghdr *h = m;
    h->rcv_fpage = 0;
    h->size_dope = l4_msg_dope(dwords, strings);
    h->snd_dope = 0;
}

static int long_ipc(l4_threadid_t *partner, l4_umword_t snd_desc, const void *snd, void *rcv,
                    l4_umword_t rcv_desc, l4_timeout_t timeout, l4_msgdope_t *dope)
{
    const l4_umword_t *sw = snd ? l4_msg_words((void *)snd) : 0;
    struct l4_regs r = {snd_desc, timeout, sw ? sw[0] : 0, sw ? sw[1] : 0, partner->low,
                        partner->high, rcv_desc};
    l4_syscall(&r, L4_SYS_IPC);
    if (rcv && rcv_desc != L4_IPC_NIL_DESCRIPTOR) {
        l4_msg_words(rcv)[0] = r.edx;
        l4_msg_words(rcv)[1] = r.ebx;
        *partner = (l4_threadid_t){r.esi, r.edi};
    }
    if (dope)
        *dope = r.eax;
    return r.eax & L4_IPC_ERROR_MASK;
}

int l4_ipc_send_long(l4_threadid_t dest, const void *snd, int map, l4_timeout_t timeout,
                     l4_msgdope_t *dope)
{
    return long_ipc(&dest, (l4_umword_t)(uintptr_t)snd | (map ? L4_IPC_SHORT_FPAGE : 0), snd,
                    0, L4_IPC_NIL_DESCRIPTOR, timeout, dope);
}

int l4_ipc_call_long(l4_threadid_t dest, const void *snd, void *rcv, l4_timeout_t timeout,
                     l4_msgdope_t *dope)
{
    return long_ipc(&dest, snd ? (l4_umword_t)(uintptr_t)snd : L4_IPC_SHORT_MSG, snd, rcv,
                    (l4_umword_t)(uintptr_t)rcv, timeout, dope);
}

int l4_ipc_receive_long(l4_threadid_t src, void *rcv, l4_timeout_t timeout, l4_msgdope_t *dope)
{
    return long_ipc(&src, L4_IPC_NIL_DESCRIPTOR, 0, rcv, (l4_umword_t)(uintptr_t)rcv, timeout,
                    dope);
}

int l4_ipc_wait_long(l4_threadid_t *src, void *rcv, l4_timeout_t timeout, l4_msgdope_t *dope)
{
    *src = L4_NIL_ID;
    return long_ipc(src, L4_IPC_NIL_DESCRIPTOR, 0, rcv,
                    (l4_umword_t)(uintptr_t)rcv | L4_IPC_OPEN_IPC, timeout, dope);
}

l4_msgdope_t l4_exc_reply_tls(l4_threadid_t dest, const struct l4_exc_msg *m, l4_umword_t base,
                              l4_umword_t limit, l4_timeout_t timeout)
{
    struct { struct l4_exc_msg m; l4_umword_t tls[2]; } r14 = {*m, {base, limit}};
    r14.m.snd_dope = l4_msg_dwords(L4_EXC_TLS_DWORDS);
    struct l4_regs r = {(l4_umword_t)(uintptr_t)&r14, timeout, m->w[0], m->w[1], dest.low,
                        dest.high, L4_IPC_NIL_DESCRIPTOR};
    l4_syscall(&r, L4_SYS_IPC);
    return r.eax;
}

l4_threadid_t l4_task_new(l4_threadid_t task, l4_umword_t mcp_or_chief, l4_umword_t esp,
                          l4_umword_t eip, l4_threadid_t pager)
{
    struct l4_regs r = {mcp_or_chief, esp, eip, pager.low, task.low, task.high, pager.high};
    l4_syscall(&r, L4_SYS_TASK_NEW);
    return (l4_threadid_t){r.esi, r.edi};
}

l4_threadid_t l4_task_id(unsigned task)
{
    return (l4_threadid_t){task << L4_ID_TASK_SHIFT, 0};
}

l4_umword_t l4_stack_prepare(void (*fn)(void *), void *arg, void *stack, size_t size)
{
    l4_umword_t *top = (l4_umword_t *)((uintptr_t)((char *)stack + size) & ~15u);
    top[-1] = (l4_umword_t)(uintptr_t)arg;                       /* fn's argument */
    top[-2] = (l4_umword_t)(uintptr_t)l4_sleep_forever;          /* if fn returns */
    (void)fn;
    return (l4_umword_t)(uintptr_t)&top[-2];
}

void l4_thread_start(unsigned lthread, void (*fn)(void *), void *arg, void *stack,
                     size_t size, l4_threadid_t pager)
{
    l4_umword_t esp = l4_stack_prepare(fn, arg, stack, size);
    l4_lthread_ex_regs(lthread, (l4_umword_t)(uintptr_t)fn, esp, pager, L4_INVALID_ID, 0);
}

/* -- KIP ------------------------------------------------------------------------------------ */
uint64_t l4_kip_clock(void)
{
    uint32_t hi, lo;
    do {        /* the tick may change it between the two reads */
        hi = l4_kip_word(L4_KIP_CLOCK + 4);
        lo = l4_kip_word(L4_KIP_CLOCK);
    } while (hi != l4_kip_word(L4_KIP_CLOCK + 4));
    return ((uint64_t)hi << 32) | lo;
}

l4_umword_t l4_kernel_interface(void)
{
    l4_umword_t kip;
    __asm__ __volatile__("lock; nop" : "=a"(kip) : "a"(0));
    return kip;
}

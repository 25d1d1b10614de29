/* servers/ktest/t_tls.c: thread-local storage (l4emu extension, docs/abi.md "Thread-local
 * storage"): GDT selector L4_SEL_TLS is the running thread's TLS segment, set by
 * lthread_ex_regs with L4_EXREGS_TLS or by an exception handler's 14-dword reply (what a
 * Linux personality does for set_thread_area). */
#include "ktest.h"

#define TLS_ROUNDS 50
#define TLS_LIMIT (L4_TLS_LIMIT_MASK | L4_TLS_LIMIT_PAGES)     /* 4 GiB, as Linux libcs ask */

struct tls_block { l4_umword_t self, tag; };
static struct tls_block tls_blocks[4];
static volatile unsigned tls_bad[4], tls_err[4], tls_rounds[4], tls_sel_seen[4];

static inline l4_umword_t gs_word(unsigned offset)
{
    l4_umword_t v;
    __asm__ volatile("movl %%gs:(%1), %0" : "=r"(v) : "r"(offset));
    return v;
}

static inline void load_gs(unsigned sel)
{
    __asm__ volatile("movw %w0, %%gs" : : "r"(sel));
}

static inline unsigned read_gs(void)
{
    unsigned sel;
    __asm__ volatile("movl %%gs, %0" : "=r"(sel));
    return sel & 0xFFFF;
}

/* lthread 5 and 6: each sets its own segment, then checks %gs:0 and %gs:4 between IPC calls
 * to the root thread (which has no TLS), the timer's preemption and a yield now and then. */
static void tls_worker(void *arg)
{
    unsigned i = (unsigned)(uintptr_t)arg;
    tls_blocks[i].self = (uintptr_t)&tls_blocks[i];
    tls_blocks[i].tag = 0x7150000 + i;
    l4_tls_set(l4_lthread_of(l4_myself()), (uintptr_t)&tls_blocks[i], TLS_LIMIT, 0);
    tls_sel_seen[i] = read_gs();
    load_gs(L4_SEL_TLS);
    for (unsigned r = 0; r < TLS_ROUNDS; r++) {
        if (gs_word(0) != (uintptr_t)&tls_blocks[i] || gs_word(4) != 0x7150000 + i)
            tls_bad[i]++;
        l4_umword_t w0, w1;
        tls_err[i] |= l4_ipc_call(root_id, L4_IPC_SHORT_MSG, i, r, L4_IPC_SHORT_MSG, &w0, &w1,
                                  L4_IPC_NEVER, 0);
        if (r % 8 == 7)
            l4_thread_switch(L4_NIL_ID);
        tls_rounds[i] = r + 1;
    }
    l4_sleep_forever();
}

int test_tls_threads(void)
{
    for (unsigned i = 0; i < 4; i++)
        tls_bad[i] = tls_rounds[i] = tls_sel_seen[i] = tls_err[i] = 0;
    thread(5, tls_worker, (void *)1);
    thread(6, tls_worker, (void *)2);
    /* Hold both callers and answer the older one with reply_and_wait: the other one ran last,
     * so its segment is loaded; the fast path (which would take this reply and the calls)
     * must not deliver to or from a thread with TLS. */
    l4_threadid_t held[2];
    l4_umword_t w0, w1;
    int err = l4_ipc_wait(&held[0], L4_IPC_SHORT_MSG, &w0, &w1, RCV_MS(100), 0);
    if (!err)
        err = l4_ipc_wait(&held[1], L4_IPC_SHORT_MSG, &w0, &w1, RCV_MS(100), 0);
    unsigned served = 2;
    while (!err && served < 2 * TLS_ROUNDS) {
        l4_threadid_t next;
        err = l4_ipc_reply_and_wait(held[0], L4_IPC_SHORT_MSG, 0, 0, &next, L4_IPC_SHORT_MSG,
                                    &w0, &w1, L4_IPC_SEND_TIMEOUT_0, 0);
        held[0] = held[1];
        held[1] = next;
        served++;
    }
    CHECK(!err, "ipc error %#x after %u calls", err, served);
    for (unsigned k = 0; k < 2; k++)
        l4_ipc_send(held[k], L4_IPC_SHORT_MSG, 0, 0, L4_IPC_SEND_TIMEOUT_0, 0);
    for (unsigned i = 0; i < 50 && (tls_rounds[1] < TLS_ROUNDS || tls_rounds[2] < TLS_ROUNDS); i++)
        sleep_ms(1);
    CHECK(tls_rounds[1] == TLS_ROUNDS && tls_rounds[2] == TLS_ROUNDS, "rounds %u %u",
          tls_rounds[1], tls_rounds[2]);
    CHECK(tls_err[1] == 0 && tls_err[2] == 0, "call errors %#x %#x", tls_err[1], tls_err[2]);
    CHECK(tls_sel_seen[1] == L4_SEL_TLS && tls_sel_seen[2] == L4_SEL_TLS,
          "GS after setting its own TLS: %#x %#x", tls_sel_seen[1], tls_sel_seen[2]);
    CHECK(tls_bad[1] == 0 && tls_bad[2] == 0, "wrong %%gs:0 seen %u and %u times", tls_bad[1],
          tls_bad[2]);
    /* read back; a kernel base is refused; a bad limit word too */
    l4_umword_t old[2];
    l4_tls_set(5, ~0u, ~0u, old);
    CHECK(old[0] == (uintptr_t)&tls_blocks[1] && old[1] == TLS_LIMIT, "read back %#x %#x",
          old[0], old[1]);
    l4_tls_set(5, 0xC0000000u, TLS_LIMIT, 0);
    l4_tls_set(5, 0xFFFFF000u, 0xFFF, 0);
    l4_tls_set(5, 0x1000, 0x01000000u, 0);
    l4_tls_set(5, ~0u, ~0u, old);
    CHECK(old[0] == (uintptr_t)&tls_blocks[1] && old[1] == TLS_LIMIT,
          "after refused bases: %#x %#x", old[0], old[1]);
    /* another thread of the task sets lthread 6's segment; remove lthread 5's */
    l4_tls_set(6, (uintptr_t)&tls_blocks[3], 0xFFF, old);
    CHECK(old[0] == (uintptr_t)&tls_blocks[2], "lthread 6 had %#x", old[0]);
    l4_tls_set(5, 0, 0, 0);
    l4_tls_set(5, ~0u, ~0u, old);
    CHECK(old[0] == 0 && old[1] == 0, "removed: %#x %#x", old[0], old[1]);
    park(5);
    park(6);
    l4_tls_set(6, 0, 0, 0);
    return 0;
}

/* -- set by the exception handler: Linux's set_thread_area through int 0x80 ---------------- */
static volatile l4_umword_t tls_exc_word, tls_exc_sel, tls_exc_stage;
static struct tls_block tls_exc_block = {0, 0x5E7A4EA};

static void tls_linux_process(void *arg)
{
    (void)arg;
    l4_exception_handler(0, root_id);
    tls_exc_stage = 1;
    __asm__ volatile("int $0x80" : : "a"(243) : "memory");     /* set_thread_area */
    load_gs(L4_SEL_TLS);
    tls_exc_sel = read_gs();
    tls_exc_word = gs_word(4);
    tls_exc_stage = 2;
    l4_sleep_forever();
}

int test_tls_exception_reply(void)
{
    tls_exc_stage = 0;
    tls_exc_word = 0;
    l4_threadid_t t = spawn(8, tls_linux_process, 0);
    struct l4_exc_msg m;
    l4_threadid_t src = t;
    l4_msgdope_t d = l4_exc_receive(&src, &m, RCV_MS(50));
    CHECK(d == l4_msg_dwords(L4_EXC_FRAME_DWORDS) && m.w[L4_EXC_EAX] == 243,
          "dope %#x eax %u stage %u", d, m.w[L4_EXC_EAX], tls_exc_stage);
    m.w[L4_EXC_EIP] += 2;
    m.w[L4_EXC_EAX] = 0;
    /* a kernel base: SEMSGCUT, the thread still waits */
    d = l4_exc_reply_tls(t, &m, 0xC0001000u, TLS_LIMIT, SND_MS(10));
    CHECK((d & L4_IPC_ERROR_MASK) == L4_IPC_SEMSGCUT, "kernel base: dope %#x", d);
    CHECK(state_of(t) == 9 && tls_exc_stage == 1, "state %#x stage %u", state_of(t),
          tls_exc_stage);
    d = l4_exc_reply_tls(t, &m, (uintptr_t)&tls_exc_block, TLS_LIMIT, SND_MS(10));
    CHECK(d == 0, "reply dope %#x", d);
    for (unsigned i = 0; i < 20 && tls_exc_stage != 2; i++)
        sleep_ms(1);
    CHECK(tls_exc_stage == 2, "stage %u", tls_exc_stage);
    CHECK(tls_exc_sel == L4_SEL_TLS && tls_exc_word == 0x5E7A4EA, "gs %#x, %%gs:4 = %#x",
          tls_exc_sel, tls_exc_word);
    kill(8);
    return 0;
}

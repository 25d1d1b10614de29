/* servers/ktest/t_ipc.c: short IPC: send/receive, call/reply, open wait, both kernel entries,
 * timeouts (zero and finite), errors, cancellation, map and grant messages. */
#include "ktest.h"

static volatile l4_umword_t got0, got1, done;

/* receive one message from the root task, send back w0 + w1 */
static void adder(void *arg)
{
    (void)arg;
    l4_umword_t a, b;
    if (l4_ipc_receive(root_id, L4_IPC_SHORT_MSG, &a, &b, L4_IPC_NEVER, 0) == 0) {
        got0 = a;
        got1 = b;
        l4_ipc_send(root_id, L4_IPC_SHORT_MSG, a + b, 0, L4_IPC_NEVER, 0);
    }
    l4_sleep_forever();
}

int test_ipc_send_receive(void)
{
    l4_threadid_t t = spawn(5, adder, 0);
    CHECK(!l4_is_nil(t), "task_new failed");
    int err = l4_ipc_send(t, L4_IPC_SHORT_MSG, 40, 2, SND_MS(100), 0);
    CHECK(err == 0, "send: %#x", err);
    l4_umword_t sum = 0;
    err = l4_ipc_receive(t, L4_IPC_SHORT_MSG, &sum, 0, RCV_MS(100), 0);
    CHECK(err == 0 && sum == 42, "receive: %#x, sum %u", err, sum);
    CHECK(got0 == 40 && got1 == 2, "the task got %u %u", got0, got1);
    kill(5);
    return 0;
}

/* a server: reply w0 * 2 and w1 + 1, forever */
static void doubler(void *arg)
{
    (void)arg;
    l4_threadid_t c;
    l4_umword_t a, b;
    int err = l4_ipc_wait(&c, L4_IPC_SHORT_MSG, &a, &b, L4_IPC_NEVER, 0);
    for (;;) {
        if (err) {
            err = l4_ipc_wait(&c, L4_IPC_SHORT_MSG, &a, &b, L4_IPC_NEVER, 0);
            continue;
        }
        err = l4_ipc_reply_and_wait(c, L4_IPC_SHORT_MSG, a * 2, b + 1, &c, L4_IPC_SHORT_MSG,
                                    &a, &b, L4_IPC_SEND_TIMEOUT_0, 0);
    }
}

int test_ipc_call_reply(void)
{
    l4_threadid_t t = spawn(5, doubler, 0);
    for (l4_umword_t i = 1; i <= 50; i++) {
        l4_umword_t a, b;
        int err = l4_ipc_call(t, L4_IPC_SHORT_MSG, i, 1000 + i, L4_IPC_SHORT_MSG, &a, &b,
                              RCV_MS(100), 0);
        CHECK(err == 0 && a == 2 * i && b == 1001 + i, "call %u: err %#x, %u %u", i, err, a, b);
    }
    kill(5);
    return 0;
}

static void sender(void *arg)
{
    l4_ipc_send(root_id, L4_IPC_SHORT_MSG, (l4_umword_t)(uintptr_t)arg, 7, L4_IPC_NEVER, 0);
    l4_sleep_forever();
}

int test_ipc_open_wait_source(void)
{
    l4_threadid_t a = spawn(5, sender, (void *)5), b = spawn(6, sender, (void *)6);
    int seen_a = 0, seen_b = 0;
    for (int i = 0; i < 2; i++) {
        l4_threadid_t src;
        l4_umword_t w0, w1;
        int err = l4_ipc_wait(&src, L4_IPC_SHORT_MSG, &w0, &w1, RCV_MS(100), 0);
        CHECK(err == 0, "wait: %#x", err);
        if (l4_same(src, a) && w0 == 5) seen_a++;
        else if (l4_same(src, b) && w0 == 6) seen_b++;
        else CHECK(0, "source %#x:%#x with %u", src.low, src.high, w0);
    }
    CHECK(seen_a == 1 && seen_b == 1, "a %d b %d", seen_a, seen_b);
    CHECK(a.high == ((L4_ROOT_TASK << L4_ID_CHIEF_SHIFT) | (1u << L4_ID_NEST_SHIFT)),
          "chief/nest word %#x", a.high);
    kill(5);
    kill(6);
    return 0;
}

int test_ipc_both_entries(void)
{
    l4_threadid_t t = spawn(5, doubler, 0);
    for (int gate = 0; gate < 2; gate++) {
        struct l4_regs r = {L4_IPC_SHORT_MSG, L4_IPC_NEVER, 21, 9, t.low, t.high, 0};
        l4_syscall_via(&r, L4_SYS_IPC, gate);
        CHECK(r.eax == 0 && r.edx == 42 && r.ebx == 10, "entry %d: %#x %u %u", gate, r.eax,
              r.edx, r.ebx);
        CHECK(r.esi == t.low && r.edi == t.high, "entry %d: source %#x", gate, r.esi);
        CHECK(r.ebp == 0, "entry %d: EBP not preserved (%#x)", gate, r.ebp);
        struct l4_regs q = {0};
        l4_syscall_via(&q, L4_SYS_ID_NEAREST, gate);
        CHECK(q.esi == root_id.low, "entry %d: id_nearest", gate);
    }
    kill(5);
    return 0;
}

static void idle_task(void *arg)
{
    (void)arg;
    l4_sleep_forever();
}

int test_ipc_timeout_zero(void)
{
    l4_threadid_t t = spawn(5, idle_task, 0);
    CHECK(wait_state(t, L4_TS_WAIT_RECEIVE, 50), "task not asleep");
    uint64_t t0 = now_ns();
    int err = l4_ipc_receive(t, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_RECV_TIMEOUT_0, 0);
    CHECK(err == L4_IPC_RETIMEOUT, "receive: %#x", err);
    err = l4_ipc_send(t, L4_IPC_SHORT_MSG, 1, 2, L4_IPC_SEND_TIMEOUT_0, 0);
    CHECK(err == L4_IPC_SETIMEOUT, "send: %#x", err);
    CHECK(now_ns() - t0 < 100000, "zero timeouts took %u ns", (unsigned)(now_ns() - t0));
    kill(5);
    return 0;
}

int test_ipc_timeout_finite(void)
{
    l4_threadid_t t = spawn(5, idle_task, 0);
    CHECK(wait_state(t, L4_TS_WAIT_RECEIVE, 50), "task not asleep");
    uint64_t t0 = now_ns();
    int err = l4_ipc_receive(t, L4_IPC_SHORT_MSG, 0, 0, RCV_MS(5), 0);
    uint64_t dt = now_ns() - t0;
    CHECK(err == L4_IPC_RETIMEOUT, "receive: %#x", err);
    /* encoded as 79 * 4^3 = 5056 us: 6 ticks, the 6th tick from now (5-6 ms) */
    CHECK(dt >= 5000000 && dt <= 6100000, "5 ms receive timeout after %u ns", (unsigned)dt);
    t0 = now_ns();
    err = l4_ipc_send(t, L4_IPC_SHORT_MSG, 1, 2, SND_MS(3), 0);
    dt = now_ns() - t0;
    CHECK(err == L4_IPC_SETIMEOUT, "send: %#x", err);
    /* 188 * 4^2 = 3008 us: 4 ticks (3-4 ms) */
    CHECK(dt >= 3000000 && dt <= 4100000, "3 ms send timeout after %u ns", (unsigned)dt);
    /* the same through the raw encoding: 4^(15-10) * 10 us = 10.24 ms */
    t0 = now_ns();
    err = l4_ipc_sleep(L4_TIMEOUT(0, 0, 10, 10));
    dt = now_ns() - t0;
    CHECK(err == L4_IPC_RETIMEOUT && dt >= 10000000 && dt <= 11100000, "sleep: %#x %u ns",
          err, (unsigned)dt);
    kill(5);
    return 0;
}

static void wait_for_sigma0(void *arg)
{
    (void)arg;
    l4_ipc_receive(L4_SIGMA0_ID, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    l4_sleep_forever();
}

/* A call the fast path looks at but leaves (the destination waits for another thread) reaches
 * the general path with the caller's registers as they came: its send timeout 0 expires at
 * once, by either entry. */
int test_ipc_fast_fallback(void)
{
    l4_threadid_t t = thread(2, wait_for_sigma0, 0);
    CHECK(wait_state(t, L4_TS_WAIT_RECEIVE, 20), "not waiting: %#x", state_of(t));
    for (int gate = 0; gate < 2; gate++) {
        l4_set_entry(gate ? L4_ENTRY_GATE : L4_ENTRY_INT);
        int err = l4_ipc_call(t, L4_IPC_SHORT_MSG, 1, 2, L4_IPC_SHORT_MSG, 0, 0,
                              L4_IPC_SEND_TIMEOUT_0, 0);
        CHECK(err == L4_IPC_SETIMEOUT, "call by %s: %#x", gate ? "gate" : "int", err);
    }
    park(2);
    return 0;
}

int test_ipc_not_existent(void)
{
    l4_threadid_t nobody = {(77u << L4_ID_TASK_SHIFT) | 1, 0};
    int err = l4_ipc_send(nobody, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    CHECK(err == L4_IPC_ENOT_EXISTENT, "send to a task that does not exist: %#x", err);
    err = l4_ipc_call(nobody, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    CHECK(err == L4_IPC_ENOT_EXISTENT, "call: %#x", err);
    err = l4_ipc_receive(nobody, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    CHECK(err == L4_IPC_ENOT_EXISTENT, "receive from: %#x", err);
    l4_threadid_t wrong_version = L4_SIGMA0_ID;
    wrong_version.low += 1;
    err = l4_ipc_send(wrong_version, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    CHECK(err == L4_IPC_ENOT_EXISTENT, "wrong version: %#x", err);
    l4_threadid_t wrong_chief = L4_SIGMA0_ID;
    wrong_chief.high = 1u << L4_ID_CHIEF_SHIFT;
    err = l4_ipc_send(wrong_chief, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    CHECK(err == L4_IPC_ENOT_EXISTENT, "wrong chief: %#x", err);
    l4_threadid_t beyond = {(1000u << L4_ID_TASK_SHIFT) | 1, 0};
    err = l4_ipc_send(beyond, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    CHECK(err == L4_IPC_ENOT_EXISTENT, "task 1000: %#x", err);
    err = l4_ipc_send(L4_NIL_ID, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    CHECK(err == L4_IPC_ENOT_EXISTENT, "nil: %#x", err);
    /* a long message whose buffer is not mapped, to the sender's own pager (sigma0): the
     * pager is the locked partner and could never answer, so the fault expires at once */
    struct l4_regs r = {0x1000, L4_IPC_NEVER, 0, 0, L4_SIGMA0_ID.low, L4_SIGMA0_ID.high,
                        L4_IPC_NIL_DESCRIPTOR};
    l4_syscall(&r, L4_SYS_IPC);
    CHECK((r.eax & L4_IPC_ERROR_MASK) == L4_IPC_SERCVPFTO, "long send: %#x", r.eax);
    /* a buffer in kernel memory is refused before anything else */
    r = (struct l4_regs){0xC0001000, L4_IPC_NEVER, 0, 0, L4_SIGMA0_ID.low, L4_SIGMA0_ID.high,
                         L4_IPC_NIL_DESCRIPTOR};
    l4_syscall(&r, L4_SYS_IPC);
    CHECK((r.eax & L4_IPC_ERROR_MASK) == L4_IPC_SEMSGCUT, "kernel buffer: %#x", r.eax);
    return 0;
}

static void crasher(void *arg)
{
    (void)arg;
    __asm__ __volatile__("ud2");
}

int test_ipc_dead_thread(void)
{
    /* a thread killed by an exception still exists (state dead) but never receives */
    l4_threadid_t t = spawn(5, crasher, 0);
    CHECK(wait_state(t, L4_TS_DEAD, 50), "not dead: state %#x", state_of(t));
    int err = l4_ipc_send(t, L4_IPC_SHORT_MSG, 0, 0, SND_MS(2), 0);
    CHECK(err == L4_IPC_SETIMEOUT, "send to a dead thread: %#x", err);
    kill(5);
    CHECK(state_of(t) == 0xFF, "still there after the task was deleted");
    return 0;
}

static volatile int cancel_result;

static void stuck_sender(void *arg)
{
    l4_threadid_t *to = arg;
    cancel_result = 0x1000 | l4_ipc_send(*to, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    l4_sleep_forever();
}

static void stuck_receiver(void *arg)
{
    (void)arg;
    cancel_result = 0x2000 | l4_ipc_receive(root_id, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    l4_sleep_forever();
}

int test_ipc_cancel(void)
{
    static l4_threadid_t target;
    target = spawn(5, idle_task, 0);
    CHECK(wait_state(target, L4_TS_WAIT_RECEIVE, 50), "target not asleep");
    cancel_result = 0;
    l4_threadid_t s = thread(2, stuck_sender, &target);
    CHECK(wait_state(s, L4_TS_PENDING_SEND, 50), "sender not pending: %#x", state_of(s));
    l4_threadid_t partner;
    l4_thread_schedule(s, L4_SCHED_INVALID, &partner, 0);
    CHECK(l4_same(partner, target), "partner %#x", partner.low);
    struct l4_exregs old;
    l4_lthread_ex_regs(2, ~0u, ~0u, L4_INVALID_ID, L4_INVALID_ID, &old);     /* cancel */
    sleep_ms(1);
    CHECK(cancel_result == (0x1000 | L4_IPC_SECANCELED), "send result %#x", cancel_result);
    cancel_result = 0;
    thread(3, stuck_receiver, 0);
    CHECK(wait_state(l4_sibling(root_id, 3), L4_TS_WAIT_RECEIVE, 50), "receiver not waiting");
    l4_lthread_ex_regs(3, ~0u, ~0u, L4_INVALID_ID, L4_INVALID_ID, &old);
    sleep_ms(1);
    CHECK(cancel_result == (0x2000 | L4_IPC_RECANCELED), "receive result %#x", cancel_result);
    park(2);
    park(3);
    kill(5);
    return 0;
}

/* map: a task sends the root task one of its pages (a fresh one the pager gave it) */
static void mapper(void *arg)
{
    int grant = arg != 0;
    volatile char *page = (volatile char *)(FRESH_BASE + 3 * PAGE);
    page[100] = grant ? 'G' : 'M';
    l4_ipc_send(root_id, L4_IPC_SHORT_FPAGE, FRESH_BASE + 3 * PAGE,
                l4_fpage(FRESH_BASE + 3 * PAGE, L4_PAGESHIFT, 1, grant), L4_IPC_NEVER, 0);
    done = 1;
    if (grant) {
        unsigned before = pager_fresh_faults;
        page[200] = 1;                          /* gone after a grant: faults again */
        got0 = pager_fresh_faults - before;
    }
    l4_sleep_forever();
}

static int map_test(int grant)
{
    const unsigned window = 0x68000000;
    done = 0;
    got0 = 0;
    l4_threadid_t t = spawn(5, mapper, grant ? (void *)1 : 0);
    l4_umword_t w0, w1;
    l4_msgdope_t dope;
    int err = l4_ipc_receive(t, l4_rcv_window(l4_fpage(window, L4_PAGESHIFT, 0, 0)), &w0, &w1,
                             RCV_MS(100), &dope);
    CHECK(err == 0 && (dope & L4_IPC_DOPE_FPAGE_RECEIVED), "err %#x dope %#x", err, dope);
    volatile char *p = (volatile char *)window;
    CHECK(p[100] == (grant ? 'G' : 'M'), "the page reads %#x", p[100]);
    CHECK(p[0] == (char)0xA3, "not the fresh frame: %#x", p[0]);
    p[100] = 'R';                               /* writable: the fpage said so */
    sleep_ms(1);
    CHECK(done, "mapper did not go on");
    if (grant)
        CHECK(got0 == 1, "after the grant the sender faulted %u times", got0);
    kill(5);
    l4_fpage_unmap(l4_fpage(window, L4_PAGESHIFT, 0, 0), L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES);
    return 0;
}

int test_ipc_map_window(void) { return map_test(0); }
int test_ipc_grant(void) { return map_test(1); }

/* A thread the fast path blocks receives with no window (its EBP is 0 or 1): a map message
 * that completes its receive later, through the general path, maps nothing - whatever window
 * an earlier IPC of the same thread had (here a receive window; a page fault's is the whole
 * space).  The client calls the root task with a map message; the root task takes it into a
 * window and answers with reply_and_wait, which the fast path takes (the client waits for
 * the answer, as in ping-pong); the client's next message is a map message. */
static void window_client(void *arg)
{
    (void)arg;
    volatile char *fresh = (volatile char *)FRESH_BASE;
    (void)fresh[14 * PAGE];                     /* fresh page 14 mapped here */
    l4_umword_t r0, r1;
    l4_ipc_call(root_id, L4_IPC_SHORT_FPAGE, 0, l4_fpage(FRESH_BASE + 14 * PAGE, 12, 0, 0),
                L4_IPC_SHORT_MSG, &r0, &r1, L4_IPC_NEVER, 0);
    l4_ipc_send(root_id, L4_IPC_SHORT_FPAGE, 0, l4_fpage(FRESH_BASE + 14 * PAGE, 12, 0, 0),
                L4_IPC_NEVER, 0);
    l4_sleep_forever();
}

int test_ipc_fast_path_window(void)
{
    const unsigned win = 0x6C020000;
    l4_threadid_t c = spawn(5, window_client, 0);
    l4_msgdope_t dope = 0;
    l4_umword_t w0 = 0, w1 = 0;
    int err = l4_ipc_receive(c, l4_rcv_window(l4_fpage(win, 12, 0, 0)), &w0, &w1, RCV_MS(100),
                             &dope);
    CHECK(err == 0 && (dope & L4_IPC_DOPE_FPAGE_RECEIVED), "the call's map: %#x %#x", err, dope);
    CHECK(*(volatile unsigned char *)win == 0xAE, "window holds %#x, want fresh page 14",
          *(volatile unsigned char *)win);
    l4_threadid_t src = L4_NIL_ID;
    dope = 0;
    err = l4_ipc_reply_and_wait(c, L4_IPC_SHORT_MSG, 1, 2, &src, L4_IPC_SHORT_MSG, &w0, &w1,
                                L4_IPC_NEVER, &dope);
    CHECK(err == 0 && l4_same(src, c), "the client's map message: %#x from %#x", err, src.low);
    CHECK(!(dope & L4_IPC_DOPE_FPAGE_RECEIVED),
          "a map message into a short receive mapped a page: dope %#x", dope);
    kill(5);
    l4_fpage_unmap(l4_fpage(win, 12, 0, 0), L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES);
    return 0;
}

/* V2's size rule: the smaller of send fpage and receive window decides; the send base picks
 * where it lies in the larger one. */
static volatile int sizes_step;

static void size_mapper(void *arg)
{
    (void)arg;
    volatile char *fresh = (volatile char *)FRESH_BASE;
    for (int i = 8; i < 12; i++)
        (void)fresh[i * PAGE];                  /* fresh pages 8-11 mapped here */
    /* a 16 KiB fpage, send base at its page 2, into a 4 KiB window: page 2 goes */
    l4_ipc_send(root_id, L4_IPC_SHORT_FPAGE, FRESH_BASE + 8 * PAGE + 2 * PAGE,
                l4_fpage(FRESH_BASE + 8 * PAGE, 14, 0, 0), L4_IPC_NEVER, 0);
    /* a 4 KiB fpage (page 11) into a 16 KiB window, send base 3 pages in: lands at page 3 */
    l4_ipc_send(root_id, L4_IPC_SHORT_FPAGE, 3 * PAGE, l4_fpage(FRESH_BASE + 11 * PAGE, 12, 0, 0),
                L4_IPC_NEVER, 0);
    sizes_step = 1;
    l4_sleep_forever();
}

int test_ipc_map_sizes(void)
{
    const unsigned small = 0x6C000000, large = 0x6C010000;
    sizes_step = 0;
    l4_threadid_t t = spawn(5, size_mapper, 0);
    l4_msgdope_t dope;
    int err = l4_ipc_receive(t, l4_rcv_window(l4_fpage(small, 12, 0, 0)), 0, 0, RCV_MS(100),
                             &dope);
    CHECK(err == 0 && (dope & L4_IPC_DOPE_FPAGE_RECEIVED), "first: %#x %#x", err, dope);
    CHECK(*(volatile unsigned char *)small == 0xAA, "got fresh page %#x, want 0xaa (page 10)",
          *(volatile unsigned char *)small);
    err = l4_ipc_receive(t, l4_rcv_window(l4_fpage(large, 14, 0, 0)), 0, 0, RCV_MS(100), &dope);
    CHECK(err == 0 && (dope & L4_IPC_DOPE_FPAGE_RECEIVED), "second: %#x %#x", err, dope);
    CHECK(*(volatile unsigned char *)(large + 3 * PAGE) == 0xAB, "window page 3: %#x",
          *(volatile unsigned char *)(large + 3 * PAGE));
    sleep_ms(1);
    CHECK(sizes_step == 1, "the mapper did not finish");
    kill(5);
    l4_fpage_unmap(l4_fpage(small, 12, 0, 0), L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES);
    l4_fpage_unmap(l4_fpage(large, 14, 0, 0), L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES);
    return 0;
}

/* servers/ktest/t_thread.c: threads and scheduling: lthread_ex_regs (create, read, modify,
 * cancel, restart), priorities and preemption at the next tick, round robin, thread_switch
 * donation, thread_schedule and the mcp. */
#include "ktest.h"

extern char l4_syscall_store[];     /* the end of libl4's entry stubs */

volatile l4_umword_t landing_eax, landing_hits;
void exregs_landing(void);
__asm__(".globl exregs_landing\n"
        "exregs_landing:\n"
        "    movl %eax, landing_eax\n"
        "    incl landing_hits\n"
        "    call l4_sleep_forever\n");

static volatile unsigned counter;

static void counting(void *arg)
{
    (void)arg;
    counter++;
    for (;;) {
        l4_umword_t w;
        if (l4_ipc_receive(root_id, L4_IPC_SHORT_MSG, &w, 0, L4_IPC_NEVER, 0) == 0)
            counter += w;
    }
}

int test_exregs_create(void)
{
    counter = 0;
    l4_threadid_t t = thread(2, counting, 0);
    CHECK(wait_state(t, L4_TS_WAIT_RECEIVE, 20), "new thread not waiting: %#x", state_of(t));
    CHECK(counter == 1, "counter %u", counter);
    CHECK(t.low == root_id.low + (2u << L4_ID_LTHREAD_SHIFT) && t.high == root_id.high,
          "id %#x", t.low);
    struct l4_exregs old;
    l4_lthread_ex_regs(2 | L4_EXREGS_NO_CANCEL, ~0u, ~0u, L4_INVALID_ID, L4_INVALID_ID, &old);
    CHECK(old.eip > (uintptr_t)l4_syscall_via && old.eip < (uintptr_t)l4_syscall_store,
          "eip %#x is not in the kernel entry stubs", old.eip);
    CHECK((old.eflags & 0x200) && !(old.eflags & 0x3000), "eflags %#x", old.eflags);
    CHECK(old.esp > 0x50000000 && old.esp < 0x60000000, "esp %#x", old.esp);
    CHECK(l4_same(old.pager, L4_SIGMA0_ID), "pager %#x (the root task's)", old.pager.low);
    CHECK(state_of(t) == L4_TS_WAIT_RECEIVE, "reading cancelled the IPC");
    CHECK(l4_ipc_send(t, L4_IPC_SHORT_MSG, 10, 0, SND_MS(10), 0) == 0, "send");
    sleep_ms(1);
    CHECK(counter == 11, "counter %u after the message", counter);
    /* without EIP and ESP nothing is created */
    l4_lthread_ex_regs(9, ~0u, ~0u, L4_INVALID_ID, L4_INVALID_ID, &old);
    CHECK(old.eip == ~0u && old.esp == ~0u, "nonexistent thread: %#x %#x", old.eip, old.esp);
    CHECK(state_of(l4_sibling(root_id, 9)) == 0xFF, "lthread 9 exists");
    park(2);
    return 0;
}

static void stuck(void *arg)
{
    (void)arg;
    l4_ipc_receive(root_id, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    counter = 0xBAD;
    l4_sleep_forever();
}

static void faulting(void *arg)
{
    (void)arg;
    __asm__ __volatile__("ud2");
}

static void revived(void *arg)
{
    counter = (unsigned)(uintptr_t)arg;
    l4_sleep_forever();
}

int test_exregs_modify(void)
{
    landing_hits = 0;
    landing_eax = 0;
    counter = 0;
    l4_threadid_t t = thread(3, stuck, 0);
    CHECK(wait_state(t, L4_TS_WAIT_RECEIVE, 20), "not waiting");
    struct l4_exregs old;
    l4_threadid_t other = {0x12345678, 0x9abc};
    l4_lthread_ex_regs(3, (uintptr_t)exregs_landing, ~0u, other, L4_INVALID_ID, &old);
    sleep_ms(1);
    CHECK(landing_hits == 1, "the thread did not continue at the new EIP");
    CHECK(landing_eax == L4_IPC_RECANCELED, "its IPC returned %#x", landing_eax);
    CHECK(counter == 0, "it went on at the old EIP");
    l4_lthread_ex_regs(3 | L4_EXREGS_NO_CANCEL, ~0u, ~0u, L4_INVALID_ID, L4_INVALID_ID, &old);
    CHECK(l4_same(old.pager, other), "pager now %#x:%#x", old.pager.low, old.pager.high);
    /* a thread killed by an exception can be restarted */
    l4_threadid_t f = thread(4, faulting, 0);
    CHECK(wait_state(f, L4_TS_DEAD, 20), "not killed: %#x", state_of(f));
    l4_umword_t esp = l4_stack_prepare(revived, (void *)0x77, (char *)old.esp - 3 * PAGE, PAGE);
    l4_lthread_ex_regs(4, (uintptr_t)revived, esp, L4_INVALID_ID, L4_INVALID_ID, &old);
    sleep_ms(1);
    CHECK(counter == 0x77, "restarted thread did not run: %#x", counter);
    CHECK(state_of(f) == L4_TS_WAIT_RECEIVE, "restarted thread state %#x", state_of(f));
    park(3);
    park(4);
    return 0;
}

/* -- priorities ------------------------------------------------------------------------------ */
static volatile uint64_t high_ran_at;
static volatile unsigned low_progress, progress_seen;

static void high(void *arg)
{
    (void)arg;
    l4_ipc_receive(root_id, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    high_ran_at = now_ns();
    progress_seen = low_progress;
    l4_sleep_forever();
}

int test_sched_priority_preempt(void)
{
    high_ran_at = 0;
    low_progress = 0;
    l4_threadid_t h = spawn(5, high, 0);
    CHECK(wait_state(h, L4_TS_WAIT_RECEIVE, 20), "not waiting");
    l4_umword_t old = l4_thread_schedule(h, 150, 0, 0);
    CHECK(l4_sched_prio(old) == L4_DEFAULT_PRIO, "old prio %u", l4_sched_prio(old));
    CHECK(l4_sched_prio(l4_thread_schedule(h, L4_SCHED_INVALID, 0, 0)) == 150, "prio not set");
    /* Wake it with a send-only IPC: the sender goes on until the next tick. */
    uint64_t t0 = now_ns();
    CHECK(l4_ipc_send(h, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0) == 0, "send");
    while (!high_ran_at && now_ns() - t0 < 5000000)
        low_progress++;
    CHECK(high_ran_at, "the high-priority thread never ran");
    CHECK(progress_seen > 0, "it ran at once, not at the next tick");
    uint64_t delay = high_ran_at - t0;
    CHECK(delay <= 1050000, "it ran %u ns after becoming ready (a tick is 999847 ns)",
          (unsigned)delay);
    kill(5);
    return 0;
}

static volatile unsigned rr_count[2], rr_switches, rr_stop, rr_last;

static void spinner(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    l4_ipc_receive(root_id, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    while (!rr_stop) {
        rr_count[me]++;
        if (rr_last != me) {
            rr_last = me;
            rr_switches++;
        }
    }
    l4_sleep_forever();
}

int test_sched_round_robin(void)
{
    rr_count[0] = rr_count[1] = rr_switches = rr_stop = 0;
    rr_last = 9;
    l4_threadid_t a = thread(6, spinner, (void *)0), b = thread(7, spinner, (void *)1);
    CHECK(wait_state(a, L4_TS_WAIT_RECEIVE, 20) && wait_state(b, L4_TS_WAIT_RECEIVE, 20),
          "spinners not waiting");
    CHECK(l4_thread_schedule(a, 90, 0, 0) != ~0u && l4_thread_schedule(b, 90, 0, 0) != ~0u,
          "prio 90");
    l4_ipc_send(a, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    l4_ipc_send(b, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    sleep_ms(60);              /* below us they share the CPU, 10 ms slices */
    unsigned a_count = rr_count[0], b_count = rr_count[1], switches = rr_switches;
    rr_stop = 1;
    sleep_ms(25);
    CHECK(a_count > 0 && b_count > 0, "counts %u %u", a_count, b_count);
    CHECK(switches >= 5 && switches <= 8, "%u switches in 60 ms of 10 ms slices", switches);
    unsigned lo = a_count < b_count ? a_count : b_count, hi = a_count ^ b_count ^ lo;
    CHECK(hi < 2 * lo, "unfair: %u against %u", a_count, b_count);
    park(6);
    park(7);
    return 0;
}

static volatile int donated;

static void donee(void *arg)
{
    (void)arg;
    for (;;) {
        l4_ipc_receive(root_id, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
        donated = 1;
    }
}

int test_thread_switch_donation(void)
{
    l4_threadid_t d = thread(5, donee, 0);
    CHECK(wait_state(d, L4_TS_WAIT_RECEIVE, 20), "not waiting");
    donated = 0;
    CHECK(l4_ipc_send(d, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0) == 0, "send");
    CHECK(donated == 0 && state_of(d) == L4_TS_RUNNING, "it ran before the switch");
    l4_thread_switch(d);
    CHECK(donated == 1, "thread_switch did not run it");
    CHECK(state_of(d) == L4_TS_WAIT_RECEIVE, "state %#x", state_of(d));
    /* yield with nobody else ready comes straight back */
    l4_yield();
    park(5);
    return 0;
}

static volatile l4_umword_t self_raise;

static void low_mcp(void *arg)
{
    (void)arg;
    self_raise = l4_thread_schedule(l4_myself(), 120, 0, 0);
    l4_sleep_forever();
}

int test_thread_schedule_mcp(void)
{
    self_raise = 0;
    l4_threadid_t t = spawn_mcp(5, 0, low_mcp, 0);
    CHECK(wait_state(t, L4_TS_WAIT_RECEIVE, 20), "not asleep");
    CHECK(self_raise == 0xFFFFFFFFu, "a task with mcp 0 changed its priority: %#x", self_raise);
    CHECK(l4_sched_prio(l4_thread_schedule(t, L4_SCHED_INVALID, 0, 0)) == L4_DEFAULT_PRIO,
          "prio changed");
    /* the root task (mcp 255) may; with a timeslice of 4^(15-12) * 125 us = 8 ms */
    l4_umword_t param = 60 | 12u << L4_SCHED_TIME_EXP_SHIFT | 125u << L4_SCHED_TIME_MAN_SHIFT;
    l4_threadid_t partner;
    uint64_t time;
    CHECK(l4_thread_schedule(t, param, &partner, &time) != ~0u, "root could not set");
    l4_umword_t now = l4_thread_schedule(t, L4_SCHED_INVALID, 0, 0);
    CHECK(l4_sched_prio(now) == 60, "prio %u", l4_sched_prio(now));
    unsigned man = now >> L4_SCHED_TIME_MAN_SHIFT, exp = (now >> L4_SCHED_TIME_EXP_SHIFT) & 15;
    CHECK(man << (2 * (15 - exp)) == 8000, "timeslice %u * 4^(15-%u)", man, exp);
    CHECK(l4_sched_state(now) == L4_TS_WAIT_RECEIVE, "state %#x", l4_sched_state(now));
    /* nobody may change a thread above its own mcp: sigma0 runs at 100, task 5 has mcp 0 */
    kill(5);
    CHECK(l4_thread_schedule(L4_NIL_ID, L4_SCHED_INVALID, 0, 0) == ~0u, "nil thread");
    return 0;
}

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

/* -- exceptions as IPC (l4emu extension) ---------------------------------------------------
 * A victim thread loads known registers and raises an exception; the test is its exception
 * handler: it checks the frame the kernel wrote into its message buffer and replies with a
 * changed one; the victim records what it resumed with (registers, ESP, EFLAGS). */
volatile l4_umword_t exc_seen[9];   /* eax ecx edx ebx ebp esi edi esp eflags after resuming */
l4_umword_t exc_saved_esp;
volatile l4_umword_t exc_zero;
#define EXC_LOAD                                                                              \
    "    movl $0x11111111, %eax\n    movl $0x22222222, %ecx\n    movl $0x33333333, %edx\n"     \
    "    movl $0x44444444, %ebx\n    movl $0x55555555, %ebp\n    movl $0x66666666, %esi\n"     \
    "    movl $0x77777777, %edi\n"
#define EXC_RECORD                                                                            \
    "    movl %eax, exc_seen\n    movl %ecx, exc_seen+4\n    movl %edx, exc_seen+8\n"          \
    "    movl %ebx, exc_seen+12\n    movl %ebp, exc_seen+16\n    movl %esi, exc_seen+20\n"     \
    "    movl %edi, exc_seen+24\n    movl %esp, exc_seen+28\n    pushfl\n    popl exc_seen+32\n" \
    "    movl exc_saved_esp, %esp\n    cld\n"
void exc_raise_int80(void), exc_raise_gp(void), exc_raise_ud(void), exc_raise_de(void);
void exc_raise_nm(void);
extern char exc_int80_insn[], exc_gp_insn[], exc_ud_insn[], exc_de_insn[], exc_nm_insn[];
__asm__(".globl exc_raise_int80, exc_raise_gp, exc_raise_ud, exc_raise_de, exc_raise_nm\n"
        ".globl exc_int80_insn, exc_gp_insn, exc_ud_insn, exc_de_insn, exc_nm_insn\n"
        "exc_raise_int80:\n    pushl %ebp\n    pushl %ebx\n    pushl %esi\n    pushl %edi\n"
        "    movl %esp, exc_saved_esp\n" EXC_LOAD
        "exc_int80_insn:\n    int $0x80\n" EXC_RECORD "    jmp 9f\n"
        "exc_raise_gp:\n    pushl %ebp\n    pushl %ebx\n    pushl %esi\n    pushl %edi\n"
        "    movl %esp, exc_saved_esp\n" EXC_LOAD
        "exc_gp_insn:\n    hlt\n" EXC_RECORD "    jmp 9f\n"
        "exc_raise_ud:\n    pushl %ebp\n    pushl %ebx\n    pushl %esi\n    pushl %edi\n"
        "    movl %esp, exc_saved_esp\n" EXC_LOAD
        "exc_ud_insn:\n    ud2\n" EXC_RECORD "    jmp 9f\n"
        "exc_raise_de:\n    pushl %ebp\n    pushl %ebx\n    pushl %esi\n    pushl %edi\n"
        "    movl %esp, exc_saved_esp\n" EXC_LOAD
        "exc_de_insn:\n    divl exc_zero\n" EXC_RECORD "    jmp 9f\n"
        "exc_raise_nm:\n    pushl %ebp\n    pushl %ebx\n    pushl %esi\n    pushl %edi\n"
        "    movl %esp, exc_saved_esp\n" EXC_LOAD
        "exc_nm_insn:\n    fninit\n" EXC_RECORD
        "9:  popl %edi\n    popl %esi\n    popl %ebx\n    popl %ebp\n    ret\n");

static volatile unsigned exc_done;

static void exc_victim(void *arg)
{
    void (*raise)(void) = (void (*)(void))arg;
    l4_ipc_receive(root_id, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);     /* go */
    raise();
    exc_done = 1;
    l4_sleep_forever();
}

/* Start the victim (lthread 4) with us as its handler, let it raise, check the frame. */
static int exc_start(void (*raise)(void), struct l4_exc_msg *m, l4_threadid_t *victim)
{
    exc_done = 0;
    for (unsigned i = 0; i < 9; i++)
        exc_seen[i] = 0;
    l4_threadid_t t = thread(4, exc_victim, (void *)raise);
    *victim = t;
    l4_threadid_t old = l4_exception_handler(4, root_id);
    CHECK(l4_is_nil(old), "old handler %#x", old.low);
    CHECK(l4_same(l4_exception_handler(4, L4_INVALID_ID), root_id), "handler not set");
    CHECK(wait_state(t, L4_TS_WAIT_RECEIVE, 20), "victim not waiting");
    CHECK(l4_ipc_send(t, L4_IPC_SHORT_MSG, 0, 0, SND_MS(10), 0) == 0, "go");
    l4_threadid_t src = t;
    l4_msgdope_t d = l4_exc_receive(&src, m, RCV_MS(50));
    CHECK(d == l4_msg_dwords(L4_EXC_FRAME_DWORDS), "dope %#x", d);
    CHECK(l4_same(src, t), "from %#x", src.low);
    CHECK(m->snd_dope == l4_msg_dwords(L4_EXC_FRAME_DWORDS), "send dope %#x", m->snd_dope);
    CHECK(m->w[L4_EXC_EAX] == 0x11111111 && m->w[L4_EXC_ECX] == 0x22222222 &&
          m->w[L4_EXC_EDX] == 0x33333333 && m->w[L4_EXC_EBX] == 0x44444444 &&
          m->w[L4_EXC_EBP] == 0x55555555 && m->w[L4_EXC_ESI] == 0x66666666 &&
          m->w[L4_EXC_EDI] == 0x77777777,
          "registers %#x %#x %#x %#x %#x %#x %#x", m->w[5], m->w[6], m->w[7], m->w[8], m->w[9],
          m->w[10], m->w[11]);
    CHECK(m->w[L4_EXC_ESP] == exc_saved_esp, "esp %#x, was %#x", m->w[L4_EXC_ESP],
          exc_saved_esp);
    CHECK((m->w[L4_EXC_EFLAGS] & 0x3202) == 0x202, "eflags %#x", m->w[L4_EXC_EFLAGS]);
    CHECK(state_of(t) == 9, "victim state %#x while its handler holds it", state_of(t));
    return 0;
}

/* Reply with every register changed; check that the victim resumed with them. */
static int exc_finish(l4_threadid_t t, struct l4_exc_msg *m, unsigned skip)
{
    static const l4_umword_t regs[7] = {0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6};
    l4_umword_t esp = m->w[L4_EXC_ESP] - 64;
    m->w[L4_EXC_EIP] += skip;
    m->w[L4_EXC_ESP] = esp;
    m->w[L4_EXC_EFLAGS] |= 0x801 | 0x3000 | 0x20000;    /* OF CF; IOPL 3, VM: refused */
    for (unsigned i = 0; i < 7; i++)
        m->w[L4_EXC_EAX + i] = regs[i];
    l4_msgdope_t d = l4_exc_reply(t, m, SND_MS(10));
    CHECK(d == 0, "reply dope %#x", d);
    for (unsigned i = 0; i < 50 && !exc_done; i++)
        sleep_ms(1);
    CHECK(exc_done, "victim did not resume (state %#x)", state_of(t));
    for (unsigned i = 0; i < 7; i++)
        CHECK(exc_seen[i] == regs[i], "register %u = %#x", i, exc_seen[i]);
    CHECK(exc_seen[7] == esp, "esp %#x, replied %#x", exc_seen[7], esp);
    CHECK((exc_seen[8] & 0x801) == 0x801, "eflags %#x lost OF/CF", exc_seen[8]);
    CHECK((exc_seen[8] & 0x23000) == 0 && (exc_seen[8] & 0x200), "eflags %#x", exc_seen[8]);
    l4_threadid_t old = l4_exception_handler(4, L4_NIL_ID);
    CHECK(l4_same(old, root_id), "old handler %#x", old.low);
    return 0;
}

int test_exc_int80(void)
{
    /* test_irq.py measures this one: a buffer that never crosses a page (whatever the stack) */
    struct l4_exc_msg m __attribute__((aligned(64)));
    l4_threadid_t t;
    if (exc_start(exc_raise_int80, &m, &t))
        return 1;
    CHECK(m.w[L4_EXC_TRAP] == 13 && m.w[L4_EXC_ERROR] == (0x80 << 3 | 2),
          "trap %u error %#x", m.w[L4_EXC_TRAP], m.w[L4_EXC_ERROR]);
    CHECK(m.w[L4_EXC_EIP] == (uintptr_t)exc_int80_insn, "eip %#x", m.w[L4_EXC_EIP]);
    if (exc_finish(t, &m, 2))
        return 1;
    park(4);
    return 0;
}

int test_exc_gp(void)
{
    static const struct { void (*raise)(void); char *insn; unsigned trap, skip; } cases[] = {
        {exc_raise_gp, exc_gp_insn, 13, 1},     /* hlt in ring 3 */
        {exc_raise_ud, exc_ud_insn, 6, 2},      /* ud2 */
        {exc_raise_de, exc_de_insn, 0, 6},      /* divl exc_zero (F7 35 abs32) */
        {exc_raise_nm, exc_nm_insn, 7, 2},      /* fninit: no FPU (CR0.EM) */
    };
    for (unsigned c = 0; c < 4; c++) {
        struct l4_exc_msg m;
        l4_threadid_t t;
        if (exc_start(cases[c].raise, &m, &t))
            return 1;
        CHECK(m.w[L4_EXC_TRAP] == cases[c].trap && m.w[L4_EXC_ERROR] == 0,
              "case %u: trap %u error %#x", c, m.w[L4_EXC_TRAP], m.w[L4_EXC_ERROR]);
        CHECK(m.w[L4_EXC_EIP] == (uintptr_t)cases[c].insn, "case %u: eip %#x", c,
              m.w[L4_EXC_EIP]);
        if (exc_finish(t, &m, cases[c].skip))
            return 1;
        park(4);
    }
    /* a handler that does not exist: the thread is killed as without one */
    exc_done = 0;
    l4_threadid_t t = thread(4, exc_victim, (void *)exc_raise_gp);
    l4_exception_handler(4, l4_sibling(root_id, 100));
    CHECK(wait_state(t, L4_TS_WAIT_RECEIVE, 20), "victim not waiting");
    CHECK(l4_ipc_send(t, L4_IPC_SHORT_MSG, 0, 0, SND_MS(10), 0) == 0, "go");
    CHECK(wait_state(t, L4_TS_DEAD, 20), "victim state %#x, not dead", state_of(t));
    CHECK(!exc_done, "victim resumed");
    l4_exception_handler(4, L4_NIL_ID);
    park(4);
    return 0;
}

/* -- I/O ports (l4emu: per-task I/O bitmaps, I/O flexpages) ---------------------------------
 * The root task owns every port.  It maps the CMOS/RTC ports 0x70-0x71 to a task, which reads
 * status register D (always 0x80) through them; its access to port 0x64, not given, is a #GP
 * that arrives as an exception message (the task made the root task its handler). */
static volatile l4_umword_t io_status_d, io_after_denied, io_stage;

static uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static void io_driver(void *arg)
{
    (void)arg;
    l4_exception_handler(0, root_id);
    l4_umword_t w0, w1;
    int err = l4_ipc_receive(root_id, l4_rcv_window(l4_fpage(0, L4_WHOLE_ADDRESS_SPACE, 1, 0)),
                             &w0, &w1, L4_IPC_NEVER, 0);
    io_stage = err == L4_IPC_DOPE_FPAGE_RECEIVED ? 1 : 0x100 | err;
    outb(0x70, 0x0D);
    io_status_d = inb(0x71);
    io_stage = 2;
    io_after_denied = inb(0x64);        /* not given: #GP, the handler skips it with EAX set */
    io_stage = 3;
    l4_sleep_forever();
}

int test_io_ports(void)
{
    io_stage = 0;
    io_status_d = 0;
    outb(0x70, 0x0D);                    /* the root task's own ports */
    CHECK(inb(0x71) == 0x80, "root task: status D %#x", inb(0x71));
    l4_threadid_t t = spawn(7, io_driver, 0);
    CHECK(wait_state(t, L4_TS_WAIT_RECEIVE, 20), "driver not waiting: %#x", state_of(t));
    l4_umword_t iofp = L4_IOFPAGE_MARK | 0x70u << L4_IOFPAGE_PORT_SHIFT | 1u << L4_FPAGE_SIZE_SHIFT;
    CHECK(l4_ipc_send(t, L4_IPC_SHORT_FPAGE, 0, iofp, SND_MS(10), 0) == 0, "map");
    struct l4_exc_msg m;
    l4_threadid_t src = t;
    l4_msgdope_t d = l4_exc_receive(&src, &m, RCV_MS(50));
    CHECK(d == l4_msg_dwords(L4_EXC_FRAME_DWORDS), "dope %#x, stage %#x", d, io_stage);
    CHECK(io_stage == 2 && io_status_d == 0x80, "stage %#x, status D %#x", io_stage,
          io_status_d);
    CHECK(m.w[L4_EXC_TRAP] == 13 && m.w[L4_EXC_ERROR] == 0, "trap %u error %#x",
          m.w[L4_EXC_TRAP], m.w[L4_EXC_ERROR]);
    const uint8_t *insn = (const uint8_t *)(uintptr_t)m.w[L4_EXC_EIP];
    CHECK(insn[0] == 0xE4 && insn[1] == 0x64, "not the inb at %#x", m.w[L4_EXC_EIP]);
    m.w[L4_EXC_EIP] += 2;
    m.w[L4_EXC_EAX] = 0x5A;
    CHECK(l4_exc_reply(t, &m, SND_MS(10)) == 0, "reply");
    for (unsigned i = 0; i < 20 && io_stage != 3; i++)
        sleep_ms(1);
    CHECK(io_stage == 3 && io_after_denied == 0x5A, "stage %#x, value %#x", io_stage,
          io_after_denied);
    kill(7);
    /* a new task in that slot has no ports again: its first `out` is a #GP */
    io_stage = 0;
    t = spawn(7, io_driver, 0);
    CHECK(wait_state(t, L4_TS_WAIT_RECEIVE, 20), "driver not waiting");
    CHECK(l4_ipc_send(t, L4_IPC_SHORT_MSG, 0, 0, SND_MS(10), 0) == 0, "no map");
    src = t;
    d = l4_exc_receive(&src, &m, RCV_MS(50));
    CHECK(d == l4_msg_dwords(L4_EXC_FRAME_DWORDS) && m.w[L4_EXC_TRAP] == 13 && io_stage == 0x100,
          "dope %#x trap %u stage %#x", d, m.w[L4_EXC_TRAP], io_stage);
    kill(7);
    return 0;
}

/* -- interrupts as IPC: the RTC's periodic interrupt (IRQ 8) --------------------------------
 * A root-task thread (the root task owns every port) attaches to IRQ 8, programs the RTC for
 * 1024 Hz and receives IRQ_ROUNDS interrupts, acknowledging each at the RTC (status C). */
#define IRQ_ROUNDS 8
static volatile unsigned irq_got, irq_errors, irq_driver_done;
static volatile l4_umword_t irq_last_err, irq_last_src;

void irq_rtc_woken(void);

static void irq_driver(void *arg)
{
    (void)arg;
    l4_threadid_t irq8 = {8 + 1, 0};
    /* attach: a receive with timeout 0 attaches and times out */
    int err = l4_ipc_receive(irq8, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_RECV_TIMEOUT_0, 0);
    if (err != L4_IPC_RETIMEOUT) {
        irq_errors++;
        irq_last_err = err;
    }
    outb(0x70, 0x0A);
    outb(0x71, 0x26);                   /* divider 010, rate 6: 1024 Hz */
    outb(0x70, 0x0B);
    uint8_t b = inb(0x71);
    outb(0x70, 0x0B);
    outb(0x71, b | 0x40);               /* PIE */
    for (unsigned i = 0; i < IRQ_ROUNDS; i++) {
        l4_threadid_t src;
        struct l4_regs r = {L4_IPC_NIL_DESCRIPTOR, RCV_MS(20), 0, 0, irq8.low, irq8.high,
                            L4_IPC_SHORT_MSG};
        l4_syscall(&r, L4_SYS_IPC);
        __asm__ volatile(".globl irq_rtc_woken\nirq_rtc_woken:");
        src = (l4_threadid_t){r.esi, r.edi};
        if (r.eax != 0 || !l4_same(src, irq8)) {
            irq_errors++;
            irq_last_err = r.eax;
            irq_last_src = src.low;
            break;
        }
        outb(0x70, 0x0C);
        (void)inb(0x71);                /* acknowledge at the RTC: the line falls */
        irq_got++;
    }
    outb(0x70, 0x0B);
    outb(0x71, b & ~0x40);
    outb(0x70, 0x0C);
    (void)inb(0x71);
    irq_driver_done = 1;
    l4_sleep_forever();
}

int test_irq_rtc(void)
{
    irq_got = irq_errors = irq_driver_done = 0;
    l4_threadid_t irq8 = {8 + 1, 0};
    /* not an interrupt one can attach to: the timer, the cascade, beyond 15 */
    CHECK(l4_ipc_receive((l4_threadid_t){1, 0}, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_RECV_TIMEOUT_0,
                         0) == L4_IPC_ENOT_EXISTENT, "IRQ 0");
    CHECK(l4_ipc_receive((l4_threadid_t){3, 0}, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_RECV_TIMEOUT_0,
                         0) == L4_IPC_ENOT_EXISTENT, "IRQ 2");
    CHECK(l4_ipc_receive((l4_threadid_t){17, 0}, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_RECV_TIMEOUT_0,
                         0) == L4_IPC_ENOT_EXISTENT, "IRQ 16");
    l4_threadid_t t = thread(5, irq_driver, 0);
    l4_thread_schedule(t, 150, 0, 0);   /* above us: it runs when its interrupt comes */
    for (unsigned i = 0; i < 100 && !irq_driver_done; i++)
        sleep_ms(1);
    CHECK(irq_driver_done, "driver: %u interrupts, state %#x", irq_got, state_of(t));
    CHECK(irq_errors == 0, "driver: error %#x from %#x", irq_last_err, irq_last_src);
    CHECK(irq_got == IRQ_ROUNDS, "%u interrupts", irq_got);
    /* the line is owned by the driver: another thread cannot attach */
    CHECK(l4_ipc_receive(irq8, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_RECV_TIMEOUT_0, 0) ==
          L4_IPC_ENOT_EXISTENT, "IRQ 8 attached twice");
    l4_thread_schedule(t, L4_DEFAULT_PRIO, 0, 0);
    park(5);
    return 0;
}

/* Hostile exception handlers: receive buffers in kernel memory or read-only, replies from
 * buffers in kernel or unmapped memory, a short reply: nothing is written where it must not
 * be, bad replies fail with SEMSGCUT and change nothing, a short reply re-executes. */
int test_exc_hostile(void)
{
    static const l4_umword_t bad_rcv[] = {0xC0001000u, 0xFFFFF000u, (l4_umword_t)0x5000u};
    struct l4_exc_msg m;
    l4_threadid_t t;
    if (exc_start(exc_raise_gp, &m, &t))
        return 1;
    for (unsigned i = 0; i < 3; i++) {
        /* a short reply: it executes the hlt again and sends a new exception message */
        CHECK(l4_ipc_send(t, L4_IPC_SHORT_MSG, 0, 0, SND_MS(10), 0) == 0, "short reply");
        struct l4_regs r = {L4_IPC_NIL_DESCRIPTOR, RCV_MS(50), 0, 0, t.low, t.high, bad_rcv[i]};
        l4_syscall(&r, L4_SYS_IPC);
        CHECK(r.eax == 0 && r.edx == 13 && r.ebx == 0, "buffer %#x: dope %#x, %u %#x",
              bad_rcv[i], r.eax, r.edx, r.ebx);
    }
    /* the KIP is read-only for us: a buffer there gets nothing either (checked above: its
     * contents did not change, or the KIP's magic would be gone) */
    CHECK(l4_kip_word(L4_KIP_MAGIC) == L4_KIP_MAGIC_VALUE, "KIP changed");
    static const l4_umword_t bad_snd[] = {0xC0000000u, 0x7FFF0000u, 0xFFFFF000u, 0x50000002u};
    for (unsigned i = 0; i < 4; i++) {
        struct l4_regs r = {bad_snd[i], SND_MS(10), 0, 0, t.low, t.high, L4_IPC_NIL_DESCRIPTOR};
        l4_syscall(&r, L4_SYS_IPC);
        CHECK((r.eax & L4_IPC_ERROR_MASK) == L4_IPC_SEMSGCUT, "reply from %#x: %#x", bad_snd[i],
              r.eax);
        CHECK(state_of(t) == 9 && !exc_done, "victim left its exception (%#x)", state_of(t));
    }
    /* a frame too short (send dope 11 dwords) is refused too */
    l4_threadid_t src = t;
    CHECK(l4_ipc_send(t, L4_IPC_SHORT_MSG, 0, 0, SND_MS(10), 0) == 0, "short reply");
    CHECK(l4_exc_receive(&src, &m, RCV_MS(50)) == l4_msg_dwords(L4_EXC_FRAME_DWORDS), "again");
    /* a receive buffer across a page boundary (both pages mapped): the whole frame */
    static char across[2 * PAGE] __attribute__((aligned(PAGE)));
    across[0] = across[PAGE] = 1;
    struct l4_exc_msg *mx = (struct l4_exc_msg *)(across + PAGE - 24);
    CHECK(l4_ipc_send(t, L4_IPC_SHORT_MSG, 0, 0, SND_MS(10), 0) == 0, "short reply");
    src = t;
    CHECK(l4_exc_receive(&src, mx, RCV_MS(50)) == l4_msg_dwords(L4_EXC_FRAME_DWORDS), "across");
    CHECK(mx->snd_dope == l4_msg_dwords(L4_EXC_FRAME_DWORDS) && mx->w[L4_EXC_TRAP] == 13 &&
          mx->w[L4_EXC_EIP] == (uintptr_t)exc_gp_insn && mx->w[L4_EXC_EDI] == 0x77777777,
          "across: %#x %u %#x %#x", mx->snd_dope, mx->w[0], mx->w[2], mx->w[11]);
    m.snd_dope = l4_msg_dwords(L4_EXC_FRAME_DWORDS - 1);
    struct l4_regs r = {(l4_umword_t)(uintptr_t)&m, SND_MS(10), 0, 0, t.low, t.high,
                        L4_IPC_NIL_DESCRIPTOR};
    l4_syscall(&r, L4_SYS_IPC);
    CHECK((r.eax & L4_IPC_ERROR_MASK) == L4_IPC_SEMSGCUT, "11 dwords: %#x", r.eax);
    if (exc_finish(t, &m, 1))
        return 1;
    park(4);
    return 0;
}

/* servers/ktest/t_hostile.c: hostile user code.  Kernel memory, other tasks' memory, I/O
 * ports, privileged instructions and DPL-0 vectors each end as an exception the kernel
 * handles (the thread is killed, everything else goes on); random register values in every
 * system call, through both entries, leave the kernel and the other tasks intact. */
#include "ktest.h"

static volatile unsigned survived;
static volatile unsigned char stolen;

#define HOSTILE(name, code)                                                                 \
    static void name(void *arg)                                                             \
    {                                                                                       \
        (void)arg;                                                                          \
        __asm__ __volatile__(code); /* basic asm: the thread is not meant to go on */ \
        survived++;                                                                         \
        l4_sleep_forever();                                                                 \
    }

HOSTILE(read_kernel, "movl 0xC0100000, %eax")
HOSTILE(write_kernel, "movl $0, 0xC0100000")
HOSTILE(read_tcbs, "movl 0xE0000000, %eax")
HOSTILE(write_kip, "movl $0, 0xFFFFF000")
HOSTILE(port_in, "inb $0x60, %al")
HOSTILE(port_exit, "movb $0x55, %al\n\toutb %al, $0xf4")
HOSTILE(port_kdebug, "movw $0x8A00, %dx\n\toutb %al, %dx")
HOSTILE(port_serial, "movw $0x3F8, %dx\n\toutb %al, %dx")
HOSTILE(op_cli, "cli")
HOSTILE(op_hlt, "hlt")
HOSTILE(op_cr3_read, "movl %cr3, %eax")
HOSTILE(op_cr0_write, "xorl %eax, %eax\n\tmovl %eax, %cr0")
HOSTILE(op_lgdt, "lgdt 0x50000000")
HOSTILE(op_lidt, "lidt 0x50000000")
HOSTILE(op_ltr, "movw $0x28, %ax\n\tltr %ax")
HOSTILE(op_wrmsr, "xorl %ecx, %ecx\n\txorl %eax, %eax\n\txorl %edx, %edx\n\twrmsr")
HOSTILE(op_invlpg, "invlpg 0x50000000")
HOSTILE(seg_kernel_ds, "movw $0x10, %ax\n\tmovw %ax, %ds")
HOSTILE(far_kernel_code, "ljmp $0x08, $0")
HOSTILE(far_tss, "lcall $0x28, $0")
HOSTILE(int_80, "int $0x80")
HOSTILE(int_20, "int $0x20")
HOSTILE(op_ud2, "ud2")
HOSTILE(div_zero, "xorl %ecx, %ecx\n\txorl %edx, %edx\n\tmovl $1, %eax\n\tdivl %ecx")
HOSTILE(fpu_x87, "fldz")
HOSTILE(fpu_sse, "xorps %xmm0, %xmm0")

static const struct { const char *name; void (*fn)(void *); } attempts[] = {
    {"read kernel memory", read_kernel}, {"write kernel memory", write_kernel},
    {"read a TCB", read_tcbs}, {"write the KIP", write_kip},
    {"in from port 0x60", port_in}, {"out to the exit port", port_exit},
    {"out to the kdebug port", port_kdebug}, {"out to COM1", port_serial},
    {"cli", op_cli}, {"hlt", op_hlt}, {"read cr3", op_cr3_read}, {"write cr0", op_cr0_write},
    {"lgdt", op_lgdt}, {"lidt", op_lidt}, {"ltr", op_ltr}, {"wrmsr", op_wrmsr},
    {"invlpg", op_invlpg}, {"load the kernel data segment", seg_kernel_ds},
    {"far jump to kernel code", far_kernel_code}, {"far call to the TSS", far_tss},
    {"int 0x80", int_80}, {"int 0x20 (an IRQ vector)", int_20}, {"ud2", op_ud2},
    {"divide by zero", div_zero}, {"x87 (no FPU state is kept)", fpu_x87},
    {"SSE", fpu_sse},
};

static int attempt_all(unsigned from, unsigned to)
{
    for (unsigned i = from; i < to; i++) {
        survived = 0;
        l4_threadid_t t = spawn(30, attempts[i].fn, 0);
        CHECK(!l4_is_nil(t), "spawn");
        CHECK(wait_state(t, L4_TS_DEAD, 20), "%s: the thread was not killed (state %#x)",
              attempts[i].name, state_of(t));
        CHECK(survived == 0, "%s: went on after the attempt", attempts[i].name);
        kill(30);
    }
    return 0;
}

int test_hostile_kernel_memory(void) { return attempt_all(0, 4); }

int test_hostile_privileged(void)
{
    return attempt_all(4, sizeof attempts / sizeof attempts[0]);
}

static void thief(void *arg)
{
    (void)arg;
    stolen = private_page[0];   /* mapped in the root task, but the pager refuses it */
    survived++;
    l4_sleep_forever();
}

int test_hostile_other_task_memory(void)
{
    survived = 0;
    stolen = 0;
    unsigned refused = pager_refused;
    l4_threadid_t t = spawn(30, thief, 0);
    sleep_ms(2);
    CHECK(pager_refused == refused + 1 && (pager_last_refused & ~3u) == (uintptr_t)private_page,
          "the pager saw %u refusals, last %#x", pager_refused - refused, pager_last_refused);
    CHECK(survived == 0 && stolen == 0, "the task read another task's page");
    CHECK(state_of(t) == 9, "the thread should wait for its pager: state %#x", state_of(t));
    kill(30);
    return 0;
}

/* A single-step trap flag is not cleared by a call gate: the kernel must take the #DB at its
 * own entry and go on; the gate's return drops TF (the kernel's EFLAGS for gate callers). */
static void trap_flag(void *arg)
{
    (void)arg;
    l4_threadid_t me = l4_myself();
    l4_umword_t lo, hi;
    /* TF set by popf traps after the next instruction: the lcall, i.e. in the kernel */
    __asm__ __volatile__("pushl %%ebp\n\t"
                         "pushfl\n\t"
                         "orl $0x100, (%%esp)\n\t"
                         "popfl\n\t"
                         "lcall $" L4_STR(L4_GATE_ID_NEAREST) ", $0\n\t"
                         "popl %%ebp"
                         : "=S"(lo), "=D"(hi)
                         : "S"(0), "D"(0)
                         : "eax", "ebx", "ecx", "edx", "memory", "cc");
    survived = (lo == me.low && hi == me.high) ? 2 : 1;
    l4_sleep_forever();
}

int test_hostile_trap_flag(void)
{
    survived = 0;
    l4_threadid_t t = spawn(30, trap_flag, 0);
    sleep_ms(2);
    CHECK(survived == 2, "the call through the gate with TF set: %u, state %#x", survived,
          state_of(t));
    CHECK(state_of(t) == L4_TS_WAIT_RECEIVE, "state %#x", state_of(t));
    kill(30);
    return 0;
}

/* The nested-task flag is not cleared by a call gate either, and the ipc gate does not popfd
 * (kernel/fastpath.asm): an iretd with NT set would return to the TSS's back link.  The kernel
 * takes that #TS, drops NT and goes on, whichever thread's iretd it is: the caller's own after
 * a receive that times out (general path), the destination's after a call (fast path).  TF is
 * set too: its #DB at the ipc gate's entry drops it. */
static volatile unsigned nt_got, nt_reply, nt_dope, nt_timeout_dope, nt_done;
static l4_threadid_t nt_server_id;

static void nt_server(void *arg)
{
    (void)arg;
    l4_threadid_t client;
    l4_umword_t w0, w1;
    if (l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0) == 0) {
        nt_got = w0;
        l4_ipc_send(client, L4_IPC_SHORT_MSG, w0 + 1, 0, L4_IPC_NEVER, 0);
    }
    l4_sleep_forever();
}

static void nt_client(void *arg)
{
    (void)arg;
    l4_umword_t dope, w0;
    /* an open receive with a zero timeout, NT and TF set (TF traps after the lcall) */
    __asm__ __volatile__("pushl %%ebp\n\t"
                         "movl $1, %%ebp\n\t"
                         "pushfl\n\t"
                         "orl $0x4100, (%%esp)\n\t"
                         "popfl\n\t"
                         "lcall $" L4_STR(L4_GATE_IPC) ", $0\n\t"
                         "popl %%ebp"
                         : "=a"(dope)
                         : "a"(~0u), "c"(l4_ipc_timeout(~0u, 0)), "S"(0), "D"(0)
                         : "ebx", "edx", "memory", "cc");
    nt_timeout_dope = dope;
    /* a call to a server in an open wait (the fast path), NT and TF set */
    __asm__ __volatile__("pushl %%ebp\n\t"
                         "xorl %%ebp, %%ebp\n\t"
                         "pushfl\n\t"
                         "orl $0x4100, (%%esp)\n\t"
                         "popfl\n\t"
                         "lcall $" L4_STR(L4_GATE_IPC) ", $0\n\t"
                         "popl %%ebp"
                         : "=a"(dope), "=d"(w0)
                         : "a"(0), "c"(0), "S"(nt_server_id.low), "D"(nt_server_id.high),
                           "d"(0x1234), "b"(0)
                         : "memory", "cc");
    nt_dope = dope;
    nt_reply = w0;
    nt_done = 1;
    l4_sleep_forever();
}

int test_hostile_nested_task(void)
{
    nt_got = nt_reply = nt_done = 0;
    nt_dope = nt_timeout_dope = ~0u;
    nt_server_id = spawn(31, nt_server, 0);
    sleep_ms(2);                                    /* in its open wait */
    l4_threadid_t c = spawn(30, nt_client, 0);
    sleep_ms(2);
    CHECK(nt_timeout_dope == L4_IPC_RETIMEOUT, "the receive with NT set: dope %#x, state %#x",
          nt_timeout_dope, state_of(c));
    CHECK(nt_done && nt_got == 0x1234 && nt_reply == 0x1235 && nt_dope == 0,
          "the call with NT set: done %u, sent %#x, reply %#x, dope %#x", nt_done, nt_got,
          nt_reply, nt_dope);
    kill(30);
    kill(31);
    return 0;
}

/* -- fuzzing -------------------------------------------------------------------------------- */
#define FUZZ_CALLS 3000
static volatile unsigned fuzz_calls, fuzz_seed;

static uint32_t rnd(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static l4_umword_t pick_word(uint32_t *s)
{
    static const l4_umword_t special[] = {0, 1, 2, 3, 0xFFFFFFFF, 0x80000000, 0xC0000000,
                                          0xFFFFF000, 0xE0000000, 0x7FFFFFFF, 0x10, 0x11};
    uint32_t r = rnd(s);
    if ((r & 3) == 0)
        return special[(r >> 2) % (sizeof special / sizeof special[0])];
    return rnd(s);
}

static void fuzzer(void *arg)
{
    (void)arg;
    uint32_t s = fuzz_seed;
    const l4_threadid_t known[] = {root_id, pager_id, L4_SIGMA0_ID, l4_myself(), L4_NIL_ID,
                                   L4_INVALID_ID};
    for (;;) {
        l4_umword_t *w;
        struct l4_regs r;
        w = &r.eax;
        for (int i = 0; i < 7; i++)
            w[i] = pick_word(&s);
        uint32_t k = rnd(&s);
        unsigned nr = (k >> 8) % 7;
        if ((k & 3) == 0) {         /* a real partner now and then */
            l4_threadid_t id = known[(k >> 2) % 6];
            r.esi = id.low;
            r.edi = id.high;
        }
        if (nr == L4_SYS_IPC && (k & 0x30) != 0)
            r.ecx = (r.ecx & 0xFFFF0000u) | 0xEE;  /* mostly timeouts of at most 1 ms */
        if (nr == L4_SYS_LTHREAD_EX_REGS && (k & 0xC0) != 0 && (r.eax & 0x7F) == 0)
            r.eax |= 1;             /* mostly leave the fuzzing thread itself alone */
        if (nr == L4_SYS_LTHREAD_EX_REGS && r.esi == L4_SIGMA0_ID.low && r.edi == 0) {
            /* Threads paged by sigma0 at random addresses would be given all free memory,
             * page by page (sigma0 serves whoever asks first): a test of sigma0's policy,
             * not of the kernel. */
            r.esi = pager_id.low;
            r.edi = pager_id.high;
        }
        l4_syscall_via(&r, nr, (k >> 12) & 1);
        fuzz_calls++;
    }
}

int test_hostile_fuzz(void)
{
    unsigned total = 0, restarts = 0, seed = 0x1234567;
    uint64_t t0 = now_ns();
    while (total < FUZZ_CALLS && now_ns() - t0 < 200000000ull) {
        fuzz_calls = 0;
        fuzz_seed = seed;
        seed = seed * 1103515245u + 12345u;
        spawn(31, fuzzer, 0);
        unsigned last = 0;
        for (int i = 0; i < 10; i++) {
            sleep_ms(1);
            if (fuzz_calls == last)
                break;          /* it blocked (or died): start over with another seed */
            last = fuzz_calls;
        }
        total += fuzz_calls;
        restarts++;
        kill(31);
    }
    printf("ktest:   %u random system calls in %u runs\n", total, restarts);
    CHECK(total >= FUZZ_CALLS, "only %u calls", total);
    /* everything else still works */
    l4_umword_t k0;
    int err = l4_ipc_call(L4_SIGMA0_ID, L4_IPC_SHORT_MSG, L4_SIGMA0_KIP_REQUEST, 1,
                          L4_IPC_SHORT_MSG, &k0, 0, RCV_MS(100), 0);
    CHECK(err == 0 && k0 == L4_KIP_ADDR, "sigma0: %#x %#x", err, k0);
    CHECK(state_of(pager_id) == L4_TS_WAIT_RECEIVE, "pager state %#x", state_of(pager_id));
    CHECK(l4_same(l4_myself(), root_id), "myself");
    l4_threadid_t t = spawn(31, (void (*)(void *))l4_sleep_forever, 0);
    CHECK(wait_state(t, L4_TS_WAIT_RECEIVE, 20), "a new task after the fuzzing");
    kill(31);
    return 0;
}

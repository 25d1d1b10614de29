/* servers/bench/main.c: the guest side of `l4emu bench` (images/bench-l4.toml): lmbench-style
 * context-switch and IPC figures, written from the method's description (not lmbench's code).
 *
 * It is the root task.  It starts a pager thread (lthread 1) that maps the root task's own
 * pages into the tasks it creates, asks the host what to measure, and runs one measurement:
 *
 *   BENCH_LATCTX  a ring of `procs` threads, each in its own address space (the root task's
 *                 main thread is member 0, tasks 5.. the others), passes a token by IPC: every
 *                 hop is one `reply_and_wait` (send the token to the next member, open wait for
 *                 the previous one), after which the receiver sums `kib` KiB of its own working
 *                 set (bench_sumit, like lmbench's sumit).  `iters` trips round the ring =
 *                 iters * procs context switches.
 *   BENCH_OVR     the same loop and work (token bookkeeping + sumit over the members' working
 *                 sets in turn) in one thread, without IPC: lat_ctx's overhead.
 *   BENCH_INTRA   the lat_ctx ring with every member a thread of the root task (no CR3 switch).
 *   BENCH_PP_INTER / BENCH_PP_INTRA  pingpong: `iters` calls to a server in another task / in
 *                 another thread of this task; a one-way IPC is half a round trip.
 *   BENCH_NULL    `iters` id_nearest(myself) calls.
 *   BENCH_FLOOR   (used by the host's engine-floor guest, not here)
 *
 * The measured loop runs between bench_mark_start and bench_mark_end: the host puts
 * breakpoints there and reads the exact retired-instruction count and the host clock.  The
 * guest prints its own rdtsc count too (rdtsc = retired instructions in l4emu), so the image
 * also runs alone: `l4emu boot images/bench-l4.toml` measures lat_ctx N=2 size 0 by gate.
 *
 * Parameters: bench_take_params() returns (EAX, ECX, EDX) = (mode | gate << 8 | procs << 16,
 * kib, iters); the instructions before the label bench_params_hook zero them, and the host,
 * stopped at that label, writes the registers.  Zero means "the default".
 *
 * The IPC in the measured loops is a small assembly stub per entry (bench_rw_int/_gate,
 * bench_call_*), not libl4's general l4_syscall(): it loads the V2 registers directly. */
#include <l4/l4.h>
#include <l4/kdebug.h>
#include <libc.h>

#define PAGE 4096u
#define MAX_PROCS 64
#define FIRST_TASK 5
#define WORK_BYTES (1u << 20)            /* all members' working sets together */

enum { BENCH_LATCTX = 1, BENCH_OVR, BENCH_INTRA, BENCH_PP_INTER, BENCH_PP_INTRA, BENCH_NULL };

extern char __image_start[], __image_end[];

static l4_threadid_t root_id, pager_id;
static l4_threadid_t ring[MAX_PROCS];               /* member i sends to ring[(i+1) % procs] */
static unsigned procs, kib, iters, gate;
static volatile unsigned sink;                      /* sumit results land here */
static char pager_stack[PAGE] __attribute__((aligned(PAGE)));
static char stacks[MAX_PROCS][PAGE] __attribute__((aligned(PAGE)));
static char work[WORK_BYTES] __attribute__((aligned(PAGE)));

/* -- host interface ----------------------------------------------------------------------- */
void bench_take_params(uint32_t out[3]);
void bench_mark_start(void);
void bench_mark_end(void);
__asm__(".globl bench_take_params, bench_params_hook, bench_mark_start, bench_mark_end\n"
        "bench_take_params:\n"
        "    xorl %eax, %eax\n"
        "    xorl %ecx, %ecx\n"
        "    xorl %edx, %edx\n"
        "bench_params_hook:\n"              /* the host stops here and sets EAX, ECX, EDX */
        "    pushl %edi\n"
        "    movl 8(%esp), %edi\n"
        "    movl %eax, (%edi)\n"
        "    movl %ecx, 4(%edi)\n"
        "    movl %edx, 8(%edi)\n"
        "    popl %edi\n"
        "    ret\n"
        "bench_mark_start:\n"
        "    ret\n"
        "bench_mark_end:\n"
        "    ret\n");

/* -- IPC stubs: short register messages, timeouts never ------------------------------------
 * rw: send `token` to dest, then open wait; returns the word received.
 * call: send `w` to dest, closed receive from dest; returns the reply word. */
typedef l4_umword_t (*ipc_fn)(l4_umword_t low, l4_umword_t high, l4_umword_t w);
l4_umword_t bench_rw_int(l4_umword_t, l4_umword_t, l4_umword_t);
l4_umword_t bench_rw_gate(l4_umword_t, l4_umword_t, l4_umword_t);
l4_umword_t bench_call_int(l4_umword_t, l4_umword_t, l4_umword_t);
l4_umword_t bench_call_gate(l4_umword_t, l4_umword_t, l4_umword_t);
#define BENCH_STUB(name, rcv, enter)                                                    \
    __asm__(".globl " #name "\n" #name ":\n"                                            \
            "    pushl %ebp\n    pushl %ebx\n    pushl %esi\n    pushl %edi\n"          \
            "    movl 20(%esp), %esi\n    movl 24(%esp), %edi\n    movl 28(%esp), %edx\n" \
            "    xorl %eax, %eax\n    xorl %ecx, %ecx\n    movl $" #rcv ", %ebp\n"      \
            "    " enter "\n"                                                           \
            "    movl %edx, %eax\n"                                                     \
            "    popl %edi\n    popl %esi\n    popl %ebx\n    popl %ebp\n    ret\n")
BENCH_STUB(bench_rw_int, 1, "int $" L4_STR(L4_SYSCALL_IPC));
BENCH_STUB(bench_rw_gate, 1, "lcall $" L4_STR(L4_GATE_IPC) ", $0");
BENCH_STUB(bench_call_int, 0, "int $" L4_STR(L4_SYSCALL_IPC));
BENCH_STUB(bench_call_gate, 0, "lcall $" L4_STR(L4_GATE_IPC) ", $0");

/* Null system call: id_nearest(myself) (ESI:EDI = nil). */
l4_umword_t bench_null_int(void);
l4_umword_t bench_null_gate(void);
#define NULL_STUB(name, enter)                                                          \
    __asm__(".globl " #name "\n" #name ":\n"                                            \
            "    pushl %esi\n    pushl %edi\n    pushl %ebx\n    pushl %ebp\n"          \
            "    xorl %esi, %esi\n    xorl %edi, %edi\n"                                \
            "    " enter "\n"                                                           \
            "    movl %esi, %eax\n"                                                     \
            "    popl %ebp\n    popl %ebx\n    popl %edi\n    popl %esi\n    ret\n")
NULL_STUB(bench_null_int, "int $" L4_STR(L4_SYSCALL_ID_NEAREST));
NULL_STUB(bench_null_gate, "lcall $" L4_STR(L4_GATE_ID_NEAREST) ", $0");

/* -- the work per hop: sum `kib` KiB, 512 bytes per unrolled step ------------------------- */
static unsigned bench_sumit(const unsigned *p, unsigned kib_)
{
    unsigned s = 0;
    for (unsigned n = kib_ * 2; n; n--, p += 128)
        for (unsigned i = 0; i < 128; i += 8)
            s += p[i] + p[i + 1] + p[i + 2] + p[i + 3] + p[i + 4] + p[i + 5] + p[i + 6] +
                 p[i + 7];
    return s;
}

static inline const unsigned *work_of(unsigned member)
{
    return (const unsigned *)(work + (size_t)member * kib * 1024u);
}

/* One hop of the ring, `n` times: sum the working set, pass the token.  Always inlined with
 * a constant stub (one copy per entry), so that the call is direct, and with the parameters
 * in locals: a hop touches no data but its stack and `sink`.  On this engine every page
 * touched after the switch's CR3 write and every indirect branch cost host time
 * (docs/benchmarking.md, benchmarks/switch_pages.py).  The overhead loop keeps its
 * parameters in locals too. */
static inline __attribute__((always_inline)) l4_umword_t
ring_hops(ipc_fn rw, l4_threadid_t next, const unsigned *ws, unsigned k, unsigned n,
          l4_umword_t token)
{
    for (unsigned i = 0; i < n; i++) {
        sink = bench_sumit(ws, k);
        token = rw(next.low, next.high, token + 1);
    }
    return token;
}
#define RING_HOPS(next, ws, k, n, token)                                                \
    (gate ? ring_hops(bench_rw_gate, next, ws, k, n, token)                             \
          : ring_hops(bench_rw_int, next, ws, k, n, token))

/* The same hop for ever (the ring's other members). */
static inline __attribute__((always_inline, noreturn)) void
member_hops(ipc_fn rw, l4_threadid_t next, const unsigned *ws, unsigned k, l4_umword_t token)
{
    for (;;) {
        sink = bench_sumit(ws, k);
        token = rw(next.low, next.high, token + 1);
    }
}

/* -- the pager of the tasks: the root task's pages, at the same addresses ------------------ */
static void pager(void *arg)
{
    (void)arg;
    l4_threadid_t client;
    l4_umword_t w0, w1;
    int err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0);
    for (;;) {
        l4_umword_t addr = w0 & ~(PAGE - 1);
        if (err || addr < (uintptr_t)__image_start || addr >= (uintptr_t)__image_end) {
            if (!err)
                printf("bench: pager: task %u touched %p: not served\n", l4_task_of(client),
                       (void *)w0);
            err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0);
            continue;
        }
        err = l4_ipc_reply_and_wait(client, L4_IPC_SHORT_FPAGE, addr,
                                    l4_fpage(addr, L4_PAGESHIFT, 1, 0), &client,
                                    L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_SEND_TIMEOUT_0, 0);
    }
}

/* -- ring members and servers: never return ------------------------------------------------ */
static void member(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    const unsigned *ws = work_of(me);
    l4_threadid_t src;
    l4_umword_t token, dummy;
    /* the first receive by libl4 (not measured), then one stub call per hop; ring[] is
     * complete once the first token comes */
    l4_ipc_wait(&src, L4_IPC_SHORT_MSG, &token, &dummy, L4_IPC_NEVER, 0);
    l4_threadid_t next = ring[(me + 1) % procs];
    if (gate)
        member_hops(bench_rw_gate, next, ws, kib, token);
    member_hops(bench_rw_int, next, ws, kib, token);
}

static void server(void *arg)
{
    (void)arg;
    ipc_fn rw = gate ? bench_rw_gate : bench_rw_int;
    l4_threadid_t client;
    l4_umword_t w, dummy;
    l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w, &dummy, L4_IPC_NEVER, 0);
    for (;;)                            /* reply to the client (closed wait there), open wait */
        w = rw(client.low, client.high, w + 1);
}

/* -- the measurements ------------------------------------------------------------------------ */
static uint64_t t_start;

static void start(void)
{
    bench_mark_start();
    t_start = l4_rdtsc();
}

static uint64_t stop(void)
{
    uint64_t t = l4_rdtsc() - t_start;
    bench_mark_end();
    return t;
}

static uint64_t run_ring(int intra)
{
    ring[0] = root_id;
    for (unsigned i = 1; i < procs; i++) {
        l4_umword_t esp = l4_stack_prepare(member, (void *)(uintptr_t)i, stacks[i], PAGE);
        if (intra) {
            ring[i] = l4_sibling(root_id, 1 + i);
            continue;                   /* started below, once ring[] is complete */
        }
        ring[i] = l4_task_new(l4_task_id(FIRST_TASK + i - 1), 0, esp,
                              (l4_umword_t)(uintptr_t)member, pager_id);
        if (l4_is_nil(ring[i])) {
            printf("bench: task_new %u failed\n", FIRST_TASK + i - 1);
            l4_poweroff(1);
        }
    }
    if (intra)
        for (unsigned i = 1; i < procs; i++)
            l4_thread_start(1 + i, member, (void *)(uintptr_t)i, stacks[i], PAGE, pager_id);
    l4_threadid_t next = ring[1];
    const unsigned *ws = work_of(0);
    unsigned k = kib, n = iters;
    l4_umword_t token = RING_HOPS(next, ws, k, 2, 0);   /* warm-up: faults, first receives */
    start();
    token = RING_HOPS(next, ws, k, n, token);
    uint64_t t = stop();
    if (token != (2 + iters) * procs)
        printf("bench: token %u, expected %u\n", token, (2 + iters) * procs);
    return t;
}

static uint64_t run_overhead(void)
{
    /* What one hop does besides the IPC: the token and the sum of a member's working set. */
    l4_umword_t token = 0;
    unsigned k = kib, np = procs, hops = iters * procs, m = 0;    /* in locals, as ring_hops */
    start();
    for (unsigned i = 0; i < hops; i++) {
        sink = bench_sumit((const unsigned *)(work + (size_t)m * k * 1024u), k);
        token = token + 1;
        if (++m == np)
            m = 0;
    }
    uint64_t t = stop();
    sink = token;
    return t;
}

static uint64_t run_pingpong(int intra)
{
    ipc_fn call = gate ? bench_call_gate : bench_call_int;
    l4_umword_t esp = l4_stack_prepare(server, 0, stacks[1], PAGE);
    l4_threadid_t srv;
    if (intra) {
        srv = l4_sibling(root_id, 2);
        l4_thread_start(2, server, 0, stacks[1], PAGE, pager_id);
    } else {
        srv = l4_task_new(l4_task_id(FIRST_TASK), 0, esp, (l4_umword_t)(uintptr_t)server,
                          pager_id);
    }
    l4_umword_t w = 0;
    for (unsigned i = 0; i < 2; i++)
        w = call(srv.low, srv.high, w);
    start();
    for (unsigned i = 0; i < iters; i++)
        w = call(srv.low, srv.high, w);
    uint64_t t = stop();
    sink = w;
    return t;
}

static uint64_t run_null(void)
{
    l4_umword_t (*nul)(void) = gate ? bench_null_gate : bench_null_int;
    nul();
    start();
    for (unsigned i = 0; i < iters; i++)
        sink = nul();
    return stop();
}

int main(void)
{
    uint32_t p[3];
    root_id = l4_myself();
    pager_id = l4_sibling(root_id, 1);
    l4_thread_start(1, pager, 0, pager_stack, PAGE, L4_INVALID_ID);
    bench_take_params(p);
    unsigned mode = p[0] & 0xFF;
    gate = (p[0] >> 8) & 1;
    procs = p[0] >> 16;
    kib = p[1];
    iters = p[2];
    if (!mode) {                                /* alone: lat_ctx N=2 size 0, fast entry */
        mode = BENCH_LATCTX;
        gate = l4_entry_gate;
        procs = 2;
        iters = 1000;
    }
    if (procs < 2)
        procs = 2;                              /* a ring of one would send to itself */
    if (!iters)
        iters = 1000;
    if (procs > MAX_PROCS || (uint64_t)procs * kib * 1024u > WORK_BYTES) {
        printf("bench: procs %u x %u KiB does not fit (%u procs, %u KiB at most)\n", procs,
               kib, MAX_PROCS, WORK_BYTES / 1024);
        l4_poweroff(1);
    }
    /* Touch every working set here: the pager can only map pages the root task has. */
    memset(work, 1, (size_t)procs * kib * 1024u);
    for (unsigned i = 0; i < procs; i++)
        stacks[i][0] = 0;

    uint64_t t;
    switch (mode) {
    case BENCH_LATCTX: t = run_ring(0); break;
    case BENCH_INTRA: t = run_ring(1); break;
    case BENCH_OVR: t = run_overhead(); break;
    case BENCH_PP_INTER: t = run_pingpong(0); break;
    case BENCH_PP_INTRA: t = run_pingpong(1); break;
    case BENCH_NULL: t = run_null(); break;
    default:
        printf("bench: unknown mode %u\n", mode);
        l4_poweroff(1);
        return 1;
    }
    printf("bench: mode=%u entry=%s procs=%u kib=%u iters=%u insns=%u\n", mode,
           gate ? "gate" : "int", procs, kib, iters, (unsigned)t);
    l4_poweroff(0);
    return 0;
}

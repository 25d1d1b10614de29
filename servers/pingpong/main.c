/* servers/pingpong/main.c: the root task of images/pingpong.toml: IPC and page-fault costs,
 * the way L4's pingpong benchmark measures them (Hazelnut apps/bench/pingpong), in guest
 * instructions (rdtsc counts retired instructions in l4emu).
 *
 * A client task calls a server task (inter-address-space, short messages) ROUNDS times by
 * int 0x30, then by the call gate; then it touches PF_PAGES fresh pages that the root task's
 * pager thread maps on demand.  Each phase prints one machine-readable line:
 *   pingpong: <entry> rounds=<n> insns_per_round_trip=<x>
 *   pingpong: pagefault pages=<n> insns_per_fault=<x>
 * tests/kernel/test_fastpath.py and benchmarks/ put breakpoints on the symbols here and on
 * libl4's entry stubs to count exact instructions per one-way IPC. */
#include <l4/l4.h>
#include <l4/kdebug.h>
#include <libc.h>

#define PAGE 4096u
#define ROUNDS 200
#define PF_PAGES 16
#define PF_AREA 0x30000000u             /* the pages the client faults on */

extern char __image_start[], __image_end[];

static l4_threadid_t root_id, pager_id, server_id, client_id;
static char pager_stack[PAGE] __attribute__((aligned(PAGE)));
static char server_stack[PAGE] __attribute__((aligned(PAGE)));
static char client_stack[PAGE] __attribute__((aligned(PAGE)));
static char pf_frames[PF_PAGES][PAGE] __attribute__((aligned(PAGE)));   /* what they map to */
static volatile uint64_t result_rt[2], result_pf;

/* One load the pager has to serve; the breakpoint tests use the label. */
uint32_t pf_touch(volatile uint32_t *p);
__asm__(".globl pf_touch, pf_touch_insn\n"
        "pf_touch:\n"
        "    movl 4(%esp), %edx\n"
        "pf_touch_insn:\n"
        "    movl (%edx), %eax\n"
        "    ret\n");

static void pager(void *arg)
{
    (void)arg;
    l4_threadid_t client;
    l4_umword_t w0, w1;
    int err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0);
    for (;;) {
        l4_umword_t addr = w0 & ~(PAGE - 1), src = addr;
        if (addr >= PF_AREA && addr < PF_AREA + PF_PAGES * PAGE)
            src = (uintptr_t)pf_frames[(addr - PF_AREA) / PAGE];
        else if (addr < (uintptr_t)__image_start || addr >= (uintptr_t)__image_end)
            err = 1;
        if (err) {
            err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0);
            continue;
        }
        /* snd_base = the faulting page: the pager's page lands there in the client. */
        err = l4_ipc_reply_and_wait(client, L4_IPC_SHORT_FPAGE, addr,
                                    l4_fpage(src, L4_PAGESHIFT, 1, 0), &client,
                                    L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_SEND_TIMEOUT_0, 0);
    }
}

static void server(void *arg)
{
    (void)arg;
    l4_threadid_t client;
    l4_umword_t w0, w1;
    int err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0);
    for (;;) {
        if (err) {
            err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0);
            continue;
        }
        err = l4_ipc_reply_and_wait(client, L4_IPC_SHORT_MSG, w0 + 1, w1, &client,
                                    L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_SEND_TIMEOUT_0, 0);
    }
}

static void client(void *arg)
{
    (void)arg;
    for (int gate = 0; gate < 2; gate++) {
        l4_set_entry(gate ? L4_ENTRY_GATE : L4_ENTRY_INT);
        l4_umword_t r0 = 0;
        l4_ipc_call(server_id, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_SHORT_MSG, &r0, 0,
                    L4_IPC_NEVER, 0);                           /* warm up */
        uint64_t t0 = l4_rdtsc();
        for (l4_umword_t i = 0; i < ROUNDS; i++)
            l4_ipc_call(server_id, L4_IPC_SHORT_MSG, i, 0, L4_IPC_SHORT_MSG, &r0, 0,
                        L4_IPC_NEVER, 0);
        result_rt[gate] = l4_rdtsc() - t0;
    }
    uint64_t t0 = l4_rdtsc();
    for (unsigned i = 0; i < PF_PAGES; i++)
        pf_touch((volatile uint32_t *)(PF_AREA + i * PAGE));
    result_pf = l4_rdtsc() - t0;
    l4_ipc_send(root_id, L4_IPC_SHORT_MSG, 1, 0, L4_IPC_NEVER, 0);
    l4_sleep_forever();
}

int main(void)
{
    root_id = l4_myself();
    pager_id = l4_sibling(root_id, 1);
    for (unsigned i = 0; i < PF_PAGES; i++)
        pf_frames[i][0] = (char)i;      /* touched: mapped in the root task before serving */
    l4_thread_start(1, pager, 0, pager_stack, PAGE, L4_INVALID_ID);
    server_id = l4_task_new(l4_task_id(5), 0, l4_stack_prepare(server, 0, server_stack, PAGE),
                            (uintptr_t)server, pager_id);
    client_id = l4_task_new(l4_task_id(6), 0, l4_stack_prepare(client, 0, client_stack, PAGE),
                            (uintptr_t)client, pager_id);
    l4_umword_t w;
    if (l4_ipc_receive(client_id, L4_IPC_SHORT_MSG, &w, 0, L4_IPC_NEVER, 0)) {
        printf("pingpong: the client did not finish\n");
        l4_poweroff(1);
    }
    printf("pingpong: int rounds=%u insns_per_round_trip=%u\n", ROUNDS,
           (unsigned)(result_rt[0] / ROUNDS));
    printf("pingpong: gate rounds=%u insns_per_round_trip=%u\n", ROUNDS,
           (unsigned)(result_rt[1] / ROUNDS));
    printf("pingpong: pagefault pages=%u insns_per_fault=%u\n", PF_PAGES,
           (unsigned)(result_pf / PF_PAGES));
    l4_poweroff(0);
    return 0;
}

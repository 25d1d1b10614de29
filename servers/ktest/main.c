/* servers/ktest/main.c: the kernel test suite's runner, its pager and helpers (ktest.h).
 * Each test is a function returning 0 when it passed; the table below is the order. */
#include "ktest.h"

#define NSLOTS 64

extern char __image_start[], __image_end[];

l4_threadid_t root_id, pager_id;
volatile unsigned pager_faults, pager_fresh_faults, pager_refused;
volatile l4_umword_t pager_last_fault, pager_last_refused;
char fresh_frames[FRESH_PAGES][PAGE] __attribute__((aligned(PAGE)));
const char private_page[PAGE] __attribute__((aligned(PAGE))) = "root's private page";

static char stacks[NSLOTS][PAGE] __attribute__((aligned(PAGE)));
static char pager_stack[PAGE] __attribute__((aligned(PAGE)));

/* The pager: the root task's own pages (but private_page) at the same address, and the
 * fresh pages at FRESH_BASE; anything else gets no answer (the thread stays blocked). */
static void pager(void *arg)
{
    (void)arg;
    l4_threadid_t client;
    l4_umword_t w0, w1;
    int err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0);
    for (;;) {
        l4_umword_t addr = w0 & ~(PAGE - 1), src = addr;
        int ok = !err;
        if (addr >= FRESH_BASE && addr < FRESH_BASE + FRESH_PAGES * PAGE)
            src = (uintptr_t)fresh_frames[(addr - FRESH_BASE) / PAGE];
        else if (addr < (uintptr_t)__image_start || addr >= (uintptr_t)__image_end ||
                 addr == (uintptr_t)private_page)
            ok = 0;
        if (!ok) {
            if (!err) {
                pager_refused++;
                pager_last_refused = w0;
            }
            err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0);
            continue;
        }
        pager_faults++;
        if (addr >= FRESH_BASE && addr < FRESH_BASE + FRESH_PAGES * PAGE) {
            pager_fresh_faults++;
            pager_last_fault = w0;              /* the fault word, as the kernel sent it */
        }
        err = l4_ipc_reply_and_wait(client, L4_IPC_SHORT_FPAGE, addr,
                                    l4_fpage(src, L4_PAGESHIFT, 1, 0), &client,
                                    L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_SEND_TIMEOUT_0, 0);
    }
}

l4_threadid_t spawn_mcp(unsigned task, unsigned mcp, void (*fn)(void *), void *arg)
{
    l4_umword_t esp = l4_stack_prepare(fn, arg, stacks[task % NSLOTS], PAGE);
    return l4_task_new(l4_task_id(task), mcp, esp, (uintptr_t)fn, pager_id);
}

l4_threadid_t spawn(unsigned task, void (*fn)(void *), void *arg)
{
    return spawn_mcp(task, 0, fn, arg);
}

void kill(unsigned task)
{
    l4_task_new(l4_task_id(task), 0, 0, 0, L4_NIL_ID);
}

l4_threadid_t thread(unsigned lthread, void (*fn)(void *), void *arg)
{
    /* root threads use the stack slots from the top down: tasks use the low ones */
    l4_thread_start(lthread, fn, arg, stacks[NSLOTS - 1 - lthread], PAGE, L4_INVALID_ID);
    return l4_sibling(root_id, lthread);
}

void park(unsigned lthread)
{
    l4_lthread_ex_regs(lthread, (uintptr_t)l4_sleep_forever,
                       l4_stack_prepare(0, 0, stacks[NSLOTS - 1 - lthread], PAGE),
                       L4_INVALID_ID, L4_INVALID_ID, 0);
}

unsigned state_of(l4_threadid_t t)
{
    l4_umword_t p = l4_thread_schedule(t, L4_SCHED_INVALID, 0, 0);
    return p == 0xFFFFFFFFu ? 0xFF : l4_sched_state(p);
}

void sleep_ms(unsigned ms)
{
    l4_ipc_sleep(RCV_MS(ms));
}

int wait_state(l4_threadid_t t, unsigned state, unsigned ms)
{
    for (unsigned i = 0; i < ms; i++) {
        if (state_of(t) == state)
            return 1;
        sleep_ms(1);
    }
    return state_of(t) == state;
}

/* -- the suite ------------------------------------------------------------------------------ */
#define TESTS(X)                                                                              \
    X(kip) X(boot_modules) X(kdebug_output) X(id_nearest)                                     \
    X(ipc_send_receive) X(ipc_call_reply) X(ipc_open_wait_source) X(ipc_both_entries)         \
    X(ipc_timeout_zero) X(ipc_timeout_finite) X(ipc_fast_fallback) X(ipc_not_existent)       \
    X(ipc_dead_thread)                                                                        \
    X(ipc_cancel) X(ipc_map_window) X(ipc_grant) X(ipc_map_sizes) X(ipc_fast_path_window)     \
    X(pagefault_pager) X(fpage_unmap) X(sigma0_protocol) X(sigma0_superpage)                  \
    X(fpage_unmap_recursive) X(fpage_unmap_own) X(fpage_remap_readonly) X(fpage_grant_moves)  \
    X(fpage_map_overwrites) X(fpage_map_cycle)                                                \
    X(exregs_create) X(exregs_modify) X(exc_int80) X(exc_gp) X(exc_hostile) X(io_ports)       \
    X(irq_rtc) X(tls_threads) X(tls_exception_reply) X(io_unmap_recursive) X(io_unmap_own)  \
    X(superpage_split) X(ipc_fastpath_refused)                                                \
    X(task_lifecycle) X(task_not_chief) X(task_clan)                                          \
    X(clan_redirect_out) X(clan_redirect_in) X(clan_call_through_chief) X(clan_deceit)        \
    X(clan_id_nearest) X(clan_long_redirect) X(clan_delete)                                   \
    X(sched_priority_preempt) X(sched_round_robin) X(thread_switch_donation)                  \
    X(thread_schedule_mcp)                                                                    \
    X(hostile_kernel_memory) X(hostile_other_task_memory) X(hostile_privileged)               \
    X(hostile_trap_flag) X(hostile_nested_task) X(hostile_fuzz)                               \
    X(long_dwords) X(long_string_pagefault) X(long_cut) X(long_pf_timeout) X(long_hostile)    \
    X(long_map) X(long_cost)

#define DECLARE(name) int test_##name(void);
TESTS(DECLARE)
#define ENTRY(name) {#name, test_##name},
static const struct { const char *name; int (*fn)(void); } tests[] = {TESTS(ENTRY)};

int main(void)
{
    root_id = l4_myself();
    pager_id = l4_sibling(root_id, 1);
    for (unsigned i = 0; i < FRESH_PAGES; i++)
        fresh_frames[i][0] = (char)(0xA0 + i);
    l4_thread_start(1, pager, 0, pager_stack, PAGE, L4_INVALID_ID);
    unsigned n = sizeof tests / sizeof tests[0], failed = 0;
    printf("ktest: %u tests\n", n);
    for (unsigned i = 0; i < n; i++) {
        printf("ktest: %s ...\n", tests[i].name);
        l4_set_entry(L4_ENTRY_GATE);
        int r = tests[i].fn();
        printf("ktest: %s %s\n", tests[i].name, r ? "FAILED" : "ok");
        failed += r != 0;
    }
    if (failed)
        printf("ktest: %u TESTS FAILED\n", failed);
    else
        printf("ktest: ALL TESTS PASSED\n");
    l4_poweroff(failed ? 1 : 0);
    return 0;
}

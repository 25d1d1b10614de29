/* servers/ktest/ktest.h: the kernel test suite's shared helpers (a guest program in the style of
 * xv6's usertests: one named test after another, each printing "ktest: <name> ok" or what
 * failed, and "ktest: ALL TESTS PASSED" at the end; tests/kernel/test_ktest.py checks them).
 *
 * The suite is the root task.  Its lthread 1 is the pager of every task it creates; those
 * tasks run the root task's own code, whose pages the pager maps to the same addresses.
 * Memory is therefore shared with them: they report through globals. */
#ifndef KTEST_H
#define KTEST_H

#include <l4/l4.h>
#include <l4/kdebug.h>
#include <libc.h>

#define PAGE 4096u
#define FRESH_BASE 0x30000000u      /* pages the pager serves from fresh_frames[] */
#define FRESH_PAGES 16

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            printf("ktest:   check failed (%s:%d): %s: ", __FILE__, __LINE__, #cond);      \
            printf(__VA_ARGS__);                                                           \
            printf("\n");                                                                  \
            return 1;                                                                      \
        }                                                                                  \
    } while (0)

/* timeouts in milliseconds */
#define RCV_MS(ms) l4_ipc_timeout(~0u, (ms) * 1000u)
#define SND_MS(ms) l4_ipc_timeout((ms) * 1000u, ~0u)

extern l4_threadid_t root_id, pager_id;
extern volatile unsigned pager_faults, pager_fresh_faults, pager_refused;
extern volatile l4_umword_t pager_last_fault;        /* last fault in the fresh area */
extern volatile l4_umword_t pager_last_refused;
extern char fresh_frames[FRESH_PAGES][PAGE];
extern const char private_page[PAGE];     /* the pager never maps this one to anybody */

/* A task (number `task`) running fn(arg) on its own stack, paged by the pager; mcp 0. */
l4_threadid_t spawn(unsigned task, void (*fn)(void *), void *arg);
l4_threadid_t spawn_mcp(unsigned task, unsigned mcp, void (*fn)(void *), void *arg);
/* Delete a task (it becomes inactive; the root task stays its chief). */
void kill(unsigned task);
/* Thread `lthread` of the root task running fn(arg). */
l4_threadid_t thread(unsigned lthread, void (*fn)(void *), void *arg);
/* Stop a root-task thread for good (it sleeps forever). */
void park(unsigned lthread);
/* V2 state of a thread (L4_TS_*), or 0xFF if there is no such thread. */
unsigned state_of(l4_threadid_t t);
/* Wait until `t` is in state `state` (at most `ms` milliseconds); 1 if it got there. */
int wait_state(l4_threadid_t t, unsigned state, unsigned ms);
void sleep_ms(unsigned ms);
static inline uint64_t now_ns(void) { return l4_rdtsc(); }  /* 1 instruction = 1 ns */

#endif

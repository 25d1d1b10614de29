/* servers/mdbtest/main.c: the guest driver of the mapping-database property test
 * (tests/kernel/test_mapdb_property.py).  The root task gets a few pages from sigma0 and
 * creates MDB_WORKERS tasks; each participant (index 0 = the root task, 1.. = the workers) has
 * MDB_SLOTS page slots at MDB_WINDOW.  It then stops in mdb_ready(), where the host snapshots
 * the machine; per example the host writes mdb_nops operations into mdb_ops[] and runs to
 * mdb_finished().  Operations (5 words: kind, actor, target, fpage, arg):
 *   MDB_OP_MAP    actor sends the map message (snd_base = arg, fpage) to target
 *   MDB_OP_UNMAP  actor calls fpage_unmap(fpage, arg)
 * The fpage and the words are raw: the host also sends hostile ones.  The workers run the root
 * task's own code (their pager maps its image pages), so they read mdb_ops[] directly. */
#include <l4/l4.h>
#include <l4/kdebug.h>
#include <libc.h>

#define PAGE 4096u
#define MDB_WINDOW 0x68000000u           /* 4 MiB aligned: every receive window is this 4 MiB */
#define MDB_SUPER 0x6C000000u            /* the root task's 4 MiB page from sigma0 */
#define MDB_SLOTS 4
#define MDB_ROOT_PAGES 3                 /* sigma0 pages of the root task, slots 0.. */
#define MDB_WORKERS 4
#define MDB_FIRST_TASK 5
#define MDB_MAX_OPS 64
#define MDB_CMD 0xFFFFFFF1u              /* w0 of a command from the root task */

enum { MDB_OP_MAP = 1, MDB_OP_UNMAP = 2 };

extern char __image_start[], __image_end[];

volatile uint32_t mdb_ops[MDB_MAX_OPS][5];
volatile uint32_t mdb_nops;
volatile uint32_t mdb_results[MDB_MAX_OPS];     /* the actor's IPC result (MAP), for the host */
volatile uint32_t mdb_tasks[MDB_WORKERS + 1];   /* task numbers of the participants */
volatile uint32_t mdb_root_frames[MDB_ROOT_PAGES];
volatile uint32_t mdb_errors;
volatile uint32_t mdb_super_frame;              /* its physical base */

static l4_threadid_t root_id, pager_id, workers[MDB_WORKERS + 1];
static char stacks[MDB_WORKERS + 1][PAGE] __attribute__((aligned(PAGE)));
static char pager_stack[PAGE] __attribute__((aligned(PAGE)));

static l4_umword_t window(void) { return l4_rcv_window(l4_fpage(MDB_WINDOW, 22, 0, 0)); }

/* the host puts breakpoints on these */
__attribute__((noinline)) void mdb_ready(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void mdb_finished(void) { __asm__ volatile("" ::: "memory"); }

/* The workers' pager: the root task's image pages at the same address, nothing else. */
static void pager(void *arg)
{
    (void)arg;
    l4_threadid_t client;
    l4_umword_t w0, w1;
    int err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0);
    for (;;) {
        l4_umword_t addr = w0 & ~(PAGE - 1);
        if (err || addr < (uintptr_t)__image_start || addr >= (uintptr_t)__image_end) {
            err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0);
            continue;
        }
        err = l4_ipc_reply_and_wait(client, L4_IPC_SHORT_FPAGE, addr,
                                    l4_fpage(addr, 12, 1, 0), &client,
                                    L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_SEND_TIMEOUT_0, 0);
    }
}

/* Operation i by the caller (participant `me`); a map to the root task is the reply itself. */
static void do_op(unsigned me, unsigned i)
{
    volatile uint32_t *op = mdb_ops[i];
    l4_msgdope_t dope = 0;
    int err = 0;
    if (op[0] == MDB_OP_MAP) {
        unsigned to = op[2];
        if (to == 0 && me != 0) {
            mdb_results[i] = 0;
            l4_ipc_send(root_id, L4_IPC_SHORT_FPAGE, op[4], op[3], L4_IPC_NEVER, &dope);
            return;
        }
        err = l4_ipc_send(workers[to], L4_IPC_SHORT_FPAGE, op[4], op[3], L4_IPC_NEVER, &dope);
        mdb_results[i] = (uint32_t)err | 0x100;
    } else if (op[0] == MDB_OP_UNMAP) {
        l4_fpage_unmap(op[3], op[4]);
    }
    if (me != 0)
        l4_ipc_send(root_id, L4_IPC_SHORT_MSG, 0, i, L4_IPC_NEVER, &dope);
}

static void worker(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    l4_threadid_t src;
    l4_umword_t w0, w1;
    l4_msgdope_t dope;
    for (;;) {
        int err = l4_ipc_wait(&src, window(), &w0, &w1, L4_IPC_NEVER, &dope);
        if (err || !l4_same(src, root_id) || w0 != MDB_CMD || w1 >= MDB_MAX_OPS)
            continue;                        /* a map message, or noise */
        do_op(me, w1);
    }
}

int main(void)
{
    root_id = l4_myself();
    pager_id = l4_sibling(root_id, 1);
    workers[0] = root_id;
    mdb_tasks[0] = l4_task_of(root_id);
    l4_thread_start(1, pager, 0, pager_stack, PAGE, L4_INVALID_ID);
    for (unsigned i = 0; i < MDB_ROOT_PAGES; i++) {
        l4_umword_t got, w1;
        l4_msgdope_t dope;
        int err = l4_ipc_call(L4_SIGMA0_ID, L4_IPC_SHORT_MSG, L4_SIGMA0_ANY_PAGE, 0,
                              l4_rcv_window(l4_fpage(MDB_WINDOW + i * PAGE, 12, 0, 0)), &got,
                              &w1, L4_IPC_NEVER, &dope);
        if (err || !(dope & L4_IPC_DOPE_FPAGE_RECEIVED))
            mdb_errors++;
        mdb_root_frames[i] = got;
    }
    /* a 4 MiB page at MDB_SUPER: the host's ops map it whole into a worker's window (size 22
     * from MDB_SUPER, send base MDB_WINDOW), and from there on, in part or whole */
    for (l4_umword_t phys = 0x02000000u; phys < 0x03C00000u && !mdb_super_frame;
         phys += 0x400000u) {
        l4_umword_t got, w1;
        l4_msgdope_t dope;
        int err = l4_ipc_call(L4_SIGMA0_ID, L4_IPC_SHORT_MSG, phys | L4_SIGMA0_SUPERPAGE_BIT,
                              l4_fpage(0, L4_SUPERPAGESHIFT, 0, 0),
                              l4_rcv_window(l4_fpage(MDB_SUPER, L4_SUPERPAGESHIFT, 0, 0)), &got,
                              &w1, L4_IPC_NEVER, &dope);
        if (!err && (dope & L4_IPC_DOPE_FPAGE_RECEIVED))
            mdb_super_frame = got;
    }
    if (!mdb_super_frame)
        mdb_errors++;
    for (unsigned w = 1; w <= MDB_WORKERS; w++) {
        l4_umword_t esp = l4_stack_prepare(worker, (void *)(uintptr_t)w, stacks[w], PAGE);
        workers[w] = l4_task_new(l4_task_id(MDB_FIRST_TASK + w - 1), 0, esp, (uintptr_t)worker,
                                 pager_id);
        mdb_tasks[w] = l4_task_of(workers[w]);
    }
    /* every worker is waiting for its first command: a no-op round trip to each */
    for (unsigned w = 1; w <= MDB_WORKERS; w++) {
        l4_umword_t r0, r1;
        l4_msgdope_t dope;
        mdb_ops[MDB_MAX_OPS - 1][0] = 0;
        l4_ipc_call(workers[w], L4_IPC_SHORT_MSG, MDB_CMD, MDB_MAX_OPS - 1, window(), &r0, &r1,
                    L4_IPC_NEVER, &dope);
    }
    printf("mdbtest: ready, %u errors\n", mdb_errors);
    mdb_ready();
    for (unsigned i = 0; i < mdb_nops && i < MDB_MAX_OPS; i++) {
        unsigned actor = mdb_ops[i][1];
        if (actor == 0) {
            do_op(0, i);
        } else if (actor <= MDB_WORKERS) {
            l4_umword_t r0, r1;
            l4_msgdope_t dope;
            l4_ipc_call(workers[actor], L4_IPC_SHORT_MSG, MDB_CMD, i, window(), &r0, &r1,
                        L4_IPC_NEVER, &dope);
        }
    }
    mdb_finished();
    l4_poweroff(0);
    return 0;
}

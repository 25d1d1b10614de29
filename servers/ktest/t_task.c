/* servers/ktest/t_task.c: task_new: create, delete (IPC to the deleted task fails, its threads
 * are gone, senders blocked on them fail), new versions, chiefs and clans. */
#include "ktest.h"

static volatile l4_threadid_t second;
static volatile int stuck_result;

static void echo(void *arg)
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
        err = l4_ipc_reply_and_wait(c, L4_IPC_SHORT_MSG, a, b, &c, L4_IPC_SHORT_MSG, &a, &b,
                                    L4_IPC_SEND_TIMEOUT_0, 0);
    }
}

static char second_stack[PAGE] __attribute__((aligned(PAGE)));

/* answers only the root task's main thread: others trying to send to it must queue */
static void root_only(void *arg)
{
    (void)arg;
    for (;;) {
        l4_umword_t a, b;
        if (l4_ipc_receive(root_id, L4_IPC_SHORT_MSG, &a, &b, L4_IPC_NEVER, 0) == 0)
            l4_ipc_send(root_id, L4_IPC_SHORT_MSG, a, b, SND_MS(20), 0);
    }
}

static void two_threads(void *arg)
{
    (void)arg;
    l4_thread_start(1, root_only, 0, second_stack, PAGE, L4_INVALID_ID);
    second = l4_sibling(l4_myself(), 1);
    echo(0);
}

static void stuck_on(void *arg)
{
    const volatile l4_threadid_t *to = arg;
    stuck_result = 0x1000 | l4_ipc_send(*to, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    l4_sleep_forever();
}

static int echo_ok(l4_threadid_t t)
{
    l4_umword_t a = 0;
    return l4_ipc_call(t, L4_IPC_SHORT_MSG, 1234, 0, L4_IPC_SHORT_MSG, &a, 0, RCV_MS(20), 0) == 0
           && a == 1234;
}

int test_task_lifecycle(void)
{
    second = L4_NIL_ID;
    l4_threadid_t t = spawn(5, two_threads, 0);
    CHECK(l4_task_of(t) == 5 && l4_lthread_of(t) == 0, "id %#x", t.low);
    CHECK(echo_ok(t), "task does not answer");
    sleep_ms(1);
    l4_threadid_t t1 = second;
    CHECK(!l4_is_nil(t1) && echo_ok(t1), "its second thread does not answer");
    /* a thread of ours blocked sending to a thread that never receives from it */
    static l4_threadid_t target;
    target = t1;
    stuck_result = 0;
    l4_threadid_t s = thread(2, stuck_on, &target);
    CHECK(wait_state(s, L4_TS_PENDING_SEND, 20), "our sender is not queued: %#x", state_of(s));
    kill(5);
    sleep_ms(1);
    CHECK(state_of(t) == 0xFF && state_of(t1) == 0xFF, "threads still there");
    int err = l4_ipc_send(t, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    CHECK(err == L4_IPC_ENOT_EXISTENT, "send to the deleted task: %#x", err);
    err = l4_ipc_send(t1, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    CHECK(err == L4_IPC_ENOT_EXISTENT, "send to its other thread: %#x", err);
    CHECK(stuck_result == (0x1000 | L4_IPC_ENOT_EXISTENT), "our blocked sender got %#x",
          stuck_result);
    /* created again: a new version, the old ID stays invalid */
    l4_threadid_t n = spawn(5, echo, 0);
    CHECK(l4_task_of(n) == 5 && n.low != t.low, "new id %#x old %#x", n.low, t.low);
    CHECK(echo_ok(n), "the new task does not answer");
    err = l4_ipc_send(t, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    CHECK(err == L4_IPC_ENOT_EXISTENT, "old id after re-creation: %#x", err);
    kill(5);
    park(2);
    return 0;
}

static volatile l4_threadid_t child_try;

static void try_task_new(void *arg)
{
    (void)arg;
    child_try = l4_task_new(l4_task_id(20), 0, 0x1000, 0x1000, pager_id);
    l4_sleep_forever();
}

int test_task_not_chief(void)
{
    child_try = L4_INVALID_ID;
    spawn(5, try_task_new, 0);
    sleep_ms(2);
    CHECK(l4_is_nil(child_try), "a task created task 20 without being its chief: %#x",
          child_try.low);
    l4_threadid_t r = l4_task_new(l4_task_id(L4_SIGMA0_TASK), 0, 0, 0, L4_NIL_ID);
    CHECK(l4_is_nil(r), "the root task deleted sigma0");
    r = l4_task_new(l4_task_id(L4_ROOT_TASK), 0, 0, 0, L4_NIL_ID);
    CHECK(l4_is_nil(r), "the root task deleted itself");
    r = l4_task_new((l4_threadid_t){1000u << L4_ID_TASK_SHIFT, 0}, 0, 0, 0, pager_id);
    CHECK(l4_is_nil(r), "task 1000");
    kill(5);
    return 0;
}

static volatile l4_threadid_t grandchild;

static void chief(void *arg)
{
    (void)arg;
    grandchild = l4_task_new(l4_task_id(21), 0,
                             l4_stack_prepare(echo, 0, second_stack, PAGE),
                             (uintptr_t)echo, pager_id);
    l4_sleep_forever();
}

int test_task_clan(void)
{
    grandchild = L4_INVALID_ID;
    /* give task 22 the right to create task 21 */
    l4_threadid_t r = l4_task_new(l4_task_id(21), 22u << L4_ID_TASK_SHIFT, 0, 0, L4_NIL_ID);
    CHECK(l4_task_of(r) == 21, "handing over task 21: %#x", r.low);
    l4_threadid_t c = spawn(22, chief, 0);
    sleep_ms(2);
    l4_threadid_t g = grandchild;
    CHECK(l4_task_of(g) == 21, "task 22 could not create 21: %#x", g.low);
    CHECK(g.high == ((22u << L4_ID_CHIEF_SHIFT) | (2u << L4_ID_NEST_SHIFT)),
          "chief/nest %#x", g.high);
    /* task 21 is in task 22's clan: its page fault to the root task's pager goes to task 22
     * (which does not answer), as would the root task's messages to it */
    CHECK(wait_state(g, L4_TS_PENDING_SEND, 20), "task 21 is not blocked: %#x", state_of(g));
    l4_threadid_t n, partner;
    l4_thread_schedule(g, L4_SCHED_INVALID, &partner, 0);
    CHECK(l4_same(partner, c), "task 21's fault went to %#x", partner.low);
    CHECK(l4_id_nearest(g, &n) == L4_NC_INNER_CLAN && l4_same(n, c), "nearest %#x", n.low);
    /* the root task is not task 21's chief */
    r = l4_task_new(l4_task_id(21), 0, 0, 0, L4_NIL_ID);
    CHECK(l4_is_nil(r), "the root task deleted another chief's task");
    CHECK(state_of(g) == L4_TS_PENDING_SEND, "task 21 is gone");
    /* deleting the chief deletes its clan */
    kill(22);
    CHECK(state_of(c) == 0xFF && state_of(g) == 0xFF, "clan still alive");
    int err = l4_ipc_send(g, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    CHECK(err == L4_IPC_ENOT_EXISTENT, "task 21 after its chief was deleted: %#x", err);
    return 0;
}

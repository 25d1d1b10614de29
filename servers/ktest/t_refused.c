/* servers/ktest/t_refused.c: a call the fast path refuses after its first checks goes to the
 * general path with the caller's message intact (kernel/fastpath.asm fastpath_refused: the
 * fast path uses EAX, 0 at entry, for the sender's TCB).  Here the destination waits in a
 * closed receive from somebody else, which the fast path finds out last; before the fix the
 * call failed at once with SEMSGCUT (EAX was taken as a long send descriptor). */
#include "ktest.h"

static l4_threadid_t rf_helper;
static volatile l4_umword_t rf_got0, rf_got1;

static void rf_waiter(void *arg)
{
    (void)arg;
    l4_umword_t w0, w1;
    l4_threadid_t src;
    l4_ipc_receive(rf_helper, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0);
    if (!l4_ipc_wait(&src, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0)) {
        rf_got0 = w0;
        rf_got1 = w1;
        l4_ipc_send(src, L4_IPC_SHORT_MSG, w0 + w1, 0, L4_IPC_SEND_TIMEOUT_0, 0);
    }
    l4_sleep_forever();
}

static void rf_sender(void *arg)
{
    l4_ipc_send(*(l4_threadid_t *)arg, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
    l4_sleep_forever();
}

int test_ipc_fastpath_refused(void)
{
    static l4_threadid_t waiter;
    rf_got0 = rf_got1 = 0;
    rf_helper = l4_sibling(root_id, 8);
    waiter = thread(7, rf_waiter, 0);
    thread(8, rf_sender, &waiter);
    /* the waiter runs now and blocks in its closed receive from the helper (still on its
     * ready list: the state the fast path looks for); then the call */
    l4_thread_switch(waiter);
    l4_umword_t r0 = 0, r1;
    int err = l4_ipc_call(waiter, L4_IPC_SHORT_MSG, 0x1234, 0x4321, L4_IPC_SHORT_MSG, &r0, &r1,
                          L4_IPC_NEVER, 0);
    CHECK(err == 0 && r0 == 0x5555, "call: error %#x, reply %#x", err, r0);
    CHECK(rf_got0 == 0x1234 && rf_got1 == 0x4321, "the waiter got %#x %#x", rf_got0, rf_got1);
    park(7);
    park(8);
    return 0;
}

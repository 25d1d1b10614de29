/* servers/root/main.c: the root task of the default image (images/hello.toml).
 *
 * It greets, shows what the KIP says, gets a page from sigma0 at an address of its choosing,
 * and starts a pager thread and two tasks whose code is its own (the pager maps the root
 * task's pages into them at the same addresses, as L4's pingpong benchmark does):
 *   pong (task 5) answers calls with the number plus one;
 *   ping (task 6) calls pong three times, then reads the page from sigma0, which it has never
 *   touched: the page fault goes to the pager, whose map reply installs the page, and the
 *   read is retried.
 * When ping reports back, the root task powers the machine off with status 0. */
#include <l4/l4.h>
#include <l4/kdebug.h>
#include <libc.h>

#define PAGE 4096u
#define GIFT_ADDR 0x20000000u       /* where the root task puts the page it gets from sigma0 */

extern char __image_start[], __image_end[];

static l4_threadid_t root_id, pager_id, pong_id;
static char pager_stack[PAGE] __attribute__((aligned(PAGE)));
static char ping_stack[PAGE] __attribute__((aligned(PAGE)));
static char pong_stack[PAGE] __attribute__((aligned(PAGE)));

/* The pager of ping and pong: map the root task's own page at the faulting address. */
static void pager(void *arg)
{
    (void)arg;
    l4_threadid_t client;
    l4_umword_t w0, w1;
    int err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0);
    for (;;) {
        l4_umword_t addr = w0 & ~(PAGE - 1);
        int ours = (addr >= (uintptr_t)__image_start && addr < (uintptr_t)__image_end) ||
                   addr == GIFT_ADDR;
        if (err || !ours) {
            if (!err)
                printf("pager: task %u touched %p (eip %p): not served\n",
                       l4_task_of(client), (void *)w0, (void *)w1);
            err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0);
            continue;
        }
        if (addr == GIFT_ADDR)
            printf("pager: page fault of task %u at %p (eip %p): mapping the page from sigma0\n",
                   l4_task_of(client), (void *)w0, (void *)w1);
        err = l4_ipc_reply_and_wait(client, L4_IPC_SHORT_FPAGE, addr,
                                    l4_fpage(addr, L4_PAGESHIFT, 1, 0), &client,
                                    L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_SEND_TIMEOUT_0, 0);
    }
}

static void pong(void *arg)
{
    (void)arg;
    l4_threadid_t client;
    l4_umword_t n, dummy;
    int err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &n, &dummy, L4_IPC_NEVER, 0);
    for (;;) {
        if (err) {
            err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &n, &dummy, L4_IPC_NEVER, 0);
            continue;
        }
        printf("pong (task %u): got %u from task %u\n", l4_task_of(l4_myself()), n,
               l4_task_of(client));
        err = l4_ipc_reply_and_wait(client, L4_IPC_SHORT_MSG, n + 1, 0, &client,
                                    L4_IPC_SHORT_MSG, &n, &dummy, L4_IPC_SEND_TIMEOUT_0, 0);
    }
}

static void ping(void *arg)
{
    (void)arg;
    unsigned me = l4_task_of(l4_myself());
    for (l4_umword_t n = 1; n <= 3; n++) {
        l4_umword_t reply;
        int err = l4_ipc_call(pong_id, L4_IPC_SHORT_MSG, n, 0, L4_IPC_SHORT_MSG, &reply, 0,
                              L4_IPC_NEVER, 0);
        printf("ping (task %u): called pong with %u, reply %u (error %#x)\n", me, n, reply,
               err);
    }
    const volatile char *gift = (const volatile char *)GIFT_ADDR;
    printf("ping (task %u): the page at %p says: %s\n", me, (void *)gift, (const char *)gift);
    l4_ipc_send(root_id, L4_IPC_SHORT_MSG, 0x600d, 0, L4_IPC_NEVER, 0);
    l4_sleep_forever();
}

static l4_threadid_t spawn(unsigned task, void (*fn)(void *), char *stack)
{
    l4_umword_t esp = l4_stack_prepare(fn, 0, stack, PAGE);
    return l4_task_new(l4_task_id(task), 0, esp, (l4_umword_t)(uintptr_t)fn, pager_id);
}

int main(void)
{
    root_id = l4_myself();
    printf("root: hello from the root task, thread %u.%u\n", l4_task_of(root_id),
           l4_lthread_of(root_id));
    printf("root: KIP at %p: version %#x, \"%s\", %u KiB of memory, entry by %s\n",
           (void *)l4_kernel_interface(), l4_kip_word(L4_KIP_VERSION),
           (const char *)(l4_kip() + L4_KIP_VERSION_STRING),
           l4_kip_word(L4_KIP_MAIN_MEMORY + 4) / 1024,
           l4_entry_gate ? "call gate" : "int 0x30");

    /* A page from sigma0, at an address the root task chooses (its receive window). */
    l4_umword_t w0, w1;
    l4_msgdope_t dope;
    l4_ipc_call(L4_SIGMA0_ID, L4_IPC_SHORT_MSG, L4_SIGMA0_ANY_PAGE, 0,
                l4_rcv_window(l4_fpage(GIFT_ADDR, L4_PAGESHIFT, 0, 0)), &w0, &w1,
                L4_IPC_NEVER, &dope);
    if (!(dope & L4_IPC_DOPE_FPAGE_RECEIVED)) {
        printf("root: sigma0 gave no page\n");
        l4_poweroff(1);
    }
    printf("root: sigma0 mapped physical page %p at %p\n", (void *)w0, (void *)GIFT_ADDR);
    memcpy((void *)GIFT_ADDR, "hello from a page sigma0 gave the root task", 44);

    pager_id = l4_sibling(root_id, 1);
    l4_thread_start(1, pager, 0, pager_stack, PAGE, L4_INVALID_ID);
    pong_id = spawn(5, pong, pong_stack);
    l4_threadid_t ping_id = spawn(6, ping, ping_stack);
    printf("root: started pong as task %u and ping as task %u\n", l4_task_of(pong_id),
           l4_task_of(ping_id));

    l4_umword_t word;
    int err = l4_ipc_receive(ping_id, L4_IPC_SHORT_MSG, &word, 0, l4_ipc_timeout(~0u, 1000000),
                             0);
    if (err || word != 0x600d) {
        printf("root: ping did not report back (error %#x)\n", err);
        l4_poweroff(1);
    }
    printf("root: ping is done; all done, powering off\n");
    l4_poweroff(0);
    return 0;
}

/* servers/ktest/t_io.c: revoking I/O ports (docs/abi.md "I/O ports").  Ports given by an I/O
 * flexpage are recorded in the mapping database like pages: fpage_unmap of an I/O flexpage
 * takes them from every task they were given to, recursively (with L4_FP_ALL_SPACES from the
 * caller too), and a revoked port traps again (#GP: these tasks have no exception handler, so
 * they are killed). */
#include "ktest.h"

enum { IO_INB = 1, IO_MAP_TO, IO_UNMAP };
#define IO_FP (L4_IOFPAGE_MARK | 0x70u << L4_IOFPAGE_PORT_SHIFT | 1u << L4_FPAGE_SIZE_SHIFT)
#define IO_TIMEOUT l4_ipc_timeout(10000, 20000)

static l4_threadid_t io_peer[2];        /* task 7 (A) and task 9 (B) */

static inline uint8_t io_inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline void io_outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

/* A task serving commands (calls) from anybody; it accepts I/O flexpages with any message. */
static void io_server(void *arg)
{
    (void)arg;
    l4_umword_t window = l4_rcv_window(l4_fpage(0, L4_WHOLE_ADDRESS_SPACE, 1, 0));
    l4_threadid_t src;
    l4_umword_t w0, w1, r0, r1;
    int err = l4_ipc_wait(&src, window, &w0, &w1, L4_IPC_NEVER, 0);
    for (;;) {
        l4_umword_t result = err;
        if (!err || err == L4_IPC_DOPE_FPAGE_RECEIVED) {
            switch (w0) {
            case IO_INB:            /* RTC status register D: 0x80 */
                io_outb(0x70, 0x0D);
                result = io_inb(0x71);
                break;
            case IO_MAP_TO:
                result = l4_ipc_call(io_peer[w1], L4_IPC_SHORT_FPAGE, 0, IO_FP,
                                     L4_IPC_SHORT_MSG, &r0, &r1, IO_TIMEOUT, 0);
                break;
            case IO_UNMAP:
                l4_fpage_unmap(IO_FP, w1);
                result = 0;
                break;
            }
        }
        err = l4_ipc_reply_and_wait(src, L4_IPC_SHORT_MSG, result, 0, &src, window, &w0, &w1,
                                    l4_ipc_timeout(0, ~0u), 0);
    }
}

/* A command to io_peer[p]: its result, or 0x1000 | the IPC error (a dead task times out). */
static l4_umword_t io_cmd(unsigned p, l4_umword_t cmd, l4_umword_t arg)
{
    l4_umword_t r0 = 0, r1;
    int err = l4_ipc_call(io_peer[p], L4_IPC_SHORT_MSG, cmd, arg, L4_IPC_SHORT_MSG, &r0, &r1,
                          IO_TIMEOUT, 0);
    return err ? 0x1000u | err : r0;
}

/* Fresh tasks A and B; the root task gives A the ports 0x70-0x71, A gives them to B. */
static int io_setup(void)
{
    kill(7);
    kill(9);
    io_peer[0] = spawn(7, io_server, 0);
    io_peer[1] = spawn(9, io_server, 0);
    CHECK(wait_state(io_peer[0], L4_TS_WAIT_RECEIVE, 20) &&
          wait_state(io_peer[1], L4_TS_WAIT_RECEIVE, 20), "servers not waiting");
    CHECK(io_cmd(0, IO_INB, 0) == (0x1000u | L4_IPC_RETIMEOUT), "A: port without a mapping");
    io_peer[0] = spawn(7, io_server, 0);        /* (A was killed by that #GP) */
    CHECK(wait_state(io_peer[0], L4_TS_WAIT_RECEIVE, 20), "A not waiting");
    l4_umword_t r0, r1;
    CHECK(l4_ipc_call(io_peer[0], L4_IPC_SHORT_FPAGE, 0, IO_FP, L4_IPC_SHORT_MSG, &r0, &r1,
                      IO_TIMEOUT, 0) == 0, "map to A");
    CHECK(io_cmd(0, IO_MAP_TO, 1) == 0, "A maps to B");
    CHECK(io_cmd(0, IO_INB, 0) == 0x80 && io_cmd(1, IO_INB, 0) == 0x80, "A and B read the RTC");
    return 0;
}

int test_io_unmap_recursive(void)
{
    if (io_setup())
        return 1;
    /* the root task revokes what it gave: A loses the ports, and B, who had them from A */
    l4_fpage_unmap(IO_FP, L4_FP_FLUSH_PAGE);
    io_outb(0x70, 0x0D);
    CHECK(io_inb(0x71) == 0x80, "the root task's own ports");
    CHECK(io_cmd(1, IO_INB, 0) == (0x1000u | L4_IPC_RETIMEOUT), "B still has its port");
    CHECK(state_of(io_peer[1]) == L4_TS_DEAD, "B: state %#x", state_of(io_peer[1]));
    CHECK(io_cmd(0, IO_INB, 0) == (0x1000u | L4_IPC_RETIMEOUT), "A still has its port");
    CHECK(state_of(io_peer[0]) == L4_TS_DEAD, "A: state %#x", state_of(io_peer[0]));
    kill(7);
    kill(9);
    return 0;
}

int test_io_unmap_own(void)
{
    if (io_setup())
        return 1;
    /* A revokes what it gave to B and keeps its own; then with L4_FP_ALL_SPACES its own */
    CHECK(io_cmd(0, IO_UNMAP, L4_FP_FLUSH_PAGE) == 0, "A unmaps");
    CHECK(io_cmd(0, IO_INB, 0) == 0x80, "A lost its own port");
    CHECK(io_cmd(1, IO_INB, 0) == (0x1000u | L4_IPC_RETIMEOUT), "B still has its port");
    CHECK(state_of(io_peer[1]) == L4_TS_DEAD, "B: state %#x", state_of(io_peer[1]));
    /* ports have no read-only: the remap mask revokes too */
    CHECK(io_cmd(0, IO_UNMAP, L4_FP_REMAP_PAGE | L4_FP_ALL_SPACES) == 0, "A unmaps its own");
    CHECK(io_cmd(0, IO_INB, 0) == (0x1000u | L4_IPC_RETIMEOUT), "A still has its port");
    /* the root task's ports were never touched; a task deleted with ports gives them back:
     * a new A maps again without trouble */
    io_outb(0x70, 0x0D);
    CHECK(io_inb(0x71) == 0x80, "the root task's own ports");
    if (io_setup())
        return 1;
    kill(7);            /* A's deletion takes B's ports (from A) too */
    CHECK(io_cmd(1, IO_INB, 0) == (0x1000u | L4_IPC_RETIMEOUT), "B kept A's port");
    kill(9);
    return 0;
}

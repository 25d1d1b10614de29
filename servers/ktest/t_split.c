/* servers/ktest/t_split.c: 4 MiB mappings split by a partial unmap or a partial map
 * (kernel/mapdb.asm mdb_split; docs/abi.md "fpage_unmap").  The root task has a 4 MiB page from
 * sigma0 and maps it whole to B (task 10), which maps it whole to C (task 11).  An fpage_unmap
 * of one 4 KiB page of it takes just that page from B and C (their 4 MiB mappings become 4 KiB
 * ones, each derived from the same piece above it); a 4 KiB page mapped onto B's 4 MiB page
 * replaces just that page.  A prober whose page is gone faults to the pager, which refuses
 * these addresses: it stays blocked, and the root task's call to it times out. */
#include "ktest.h"

#define SP_PHYS 0x02400000u
#define SP_WIN 0x6C000000u               /* 4 MiB aligned: the same place in every task */
#define SP_PAGE(i) (SP_WIN + (i) * PAGE)
#define SP_MARK(i) (0x5B117000u + (i))
#define SP_BLOCKED 0xB10C4EDu
enum { SP_READ = 1, SP_UNMAP_OWN, SP_MAP_ON };

static l4_threadid_t sp_peer[2];         /* B, C */
static const char sp_other[PAGE] __attribute__((aligned(PAGE))) = "another page";

static void sp_prober(void *arg)
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
            case SP_READ:
                result = *(volatile l4_umword_t *)w1;
                break;
            case SP_UNMAP_OWN:
                l4_fpage_unmap(l4_fpage(w1, L4_PAGESHIFT, 0, 0),
                               L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES);
                result = 0;
                break;
            case SP_MAP_ON:     /* its whole 4 MiB page to C */
                result = l4_ipc_call(sp_peer[1], L4_IPC_SHORT_FPAGE, SP_WIN,
                                     l4_fpage(SP_WIN, L4_SUPERPAGESHIFT, 1, 0),
                                     L4_IPC_SHORT_MSG, &r0, &r1, l4_ipc_timeout(10000, 20000), 0);
                break;
            }
        }
        err = l4_ipc_reply_and_wait(src, L4_IPC_SHORT_MSG, result, 0, &src, window, &w0, &w1,
                                    l4_ipc_timeout(0, ~0u), 0);
    }
}

static l4_umword_t sp_cmd(unsigned p, l4_umword_t cmd, l4_umword_t arg)
{
    l4_umword_t r0 = 0, r1;
    int err = l4_ipc_call(sp_peer[p], L4_IPC_SHORT_MSG, cmd, arg, L4_IPC_SHORT_MSG, &r0, &r1,
                          l4_ipc_timeout(10000, 20000), 0);
    return err == L4_IPC_RETIMEOUT ? SP_BLOCKED : err ? 0x1000u | err : r0;
}

static l4_umword_t sp_read(unsigned p, unsigned page) { return sp_cmd(p, SP_READ, SP_PAGE(page)); }

/* A new B (and C, when `chain`) holding the root task's 4 MiB page whole. */
static int sp_setup(int chain)
{
    kill(10);
    kill(11);
    sp_peer[0] = spawn(10, sp_prober, 0);
    sp_peer[1] = spawn(11, sp_prober, 0);
    CHECK(wait_state(sp_peer[0], L4_TS_WAIT_RECEIVE, 20) &&
          wait_state(sp_peer[1], L4_TS_WAIT_RECEIVE, 20), "probers not waiting");
    l4_umword_t r0, r1;
    CHECK(l4_ipc_call(sp_peer[0], L4_IPC_SHORT_FPAGE, SP_WIN,
                      l4_fpage(SP_WIN, L4_SUPERPAGESHIFT, 1, 0), L4_IPC_SHORT_MSG, &r0, &r1,
                      l4_ipc_timeout(10000, 20000), 0) == 0, "map to B");
    if (chain)
        CHECK(sp_cmd(0, SP_MAP_ON, 0) == 0, "B maps to C");
    for (unsigned p = 0; p < 1u + chain; p++)
        for (unsigned i = 0; i < 6; i++)
            CHECK(sp_read(p, i) == SP_MARK(i), "prober %u page %u: %#x", p, i, sp_read(p, i));
    return 0;
}

int test_superpage_split(void)
{
    l4_umword_t got, w1;
    l4_msgdope_t dope;
    int err = l4_ipc_call(L4_SIGMA0_ID, L4_IPC_SHORT_MSG, SP_PHYS | L4_SIGMA0_SUPERPAGE_BIT,
                          l4_fpage(0, L4_SUPERPAGESHIFT, 0, 0),
                          l4_rcv_window(l4_fpage(SP_WIN, L4_SUPERPAGESHIFT, 0, 0)), &got, &w1,
                          RCV_MS(100), &dope);
    CHECK(err == 0 && (dope & L4_IPC_DOPE_FPAGE_RECEIVED), "sigma0: err %#x dope %#x", err, dope);
    for (unsigned i = 0; i < 1024; i++)
        *(volatile l4_umword_t *)SP_PAGE(i) = SP_MARK(i);
    if (sp_setup(1))
        return 1;
    /* the root task revokes one page of what it gave: B and C lose that page only */
    l4_fpage_unmap(l4_fpage(SP_PAGE(1), L4_PAGESHIFT, 0, 0), L4_FP_FLUSH_PAGE);
    CHECK(*(volatile l4_umword_t *)SP_PAGE(1) == SP_MARK(1), "the root task's own page 1");
    for (unsigned p = 0; p < 2; p++) {
        CHECK(sp_read(p, 0) == SP_MARK(0) && sp_read(p, 2) == SP_MARK(2) &&
              sp_read(p, 1023) == SP_MARK(1023), "prober %u lost more than page 1", p);
        unsigned refused = pager_refused;
        CHECK(sp_read(p, 1) == SP_BLOCKED, "prober %u still has page 1", p);
        CHECK(pager_refused == refused + 1 && (pager_last_refused & ~3u) == SP_PAGE(1),
              "prober %u: fault %#x", p, pager_last_refused);
    }
    /* a 4 KiB page mapped onto B's 4 MiB page replaces that page only */
    if (sp_setup(0))
        return 1;
    l4_umword_t r0, r1;
    CHECK(l4_ipc_call(sp_peer[0], L4_IPC_SHORT_FPAGE, SP_PAGE(2),
                      l4_fpage((uintptr_t)sp_other, L4_PAGESHIFT, 0, 0), L4_IPC_SHORT_MSG, &r0,
                      &r1, l4_ipc_timeout(10000, 20000), 0) == 0, "map a page onto it");
    CHECK(sp_read(0, 2) == *(const l4_umword_t *)sp_other, "B page 2: %#x", sp_read(0, 2));
    CHECK(sp_read(0, 1) == SP_MARK(1) && sp_read(0, 3) == SP_MARK(3) &&
          sp_read(0, 1023) == SP_MARK(1023), "B lost the rest");
    /* B takes one page of its own (4 KiB pieces now) with bit 31: the root task keeps it */
    CHECK(sp_cmd(0, SP_UNMAP_OWN, SP_PAGE(3)) == 0, "B unmaps");
    CHECK(sp_read(0, 4) == SP_MARK(4), "B page 4");
    CHECK(sp_read(0, 3) == SP_BLOCKED, "B still has page 3");
    CHECK(*(volatile l4_umword_t *)SP_PAGE(3) == SP_MARK(3), "the root task's page 3");
    kill(10);
    kill(11);
    /* and the root task's own mapping (split) goes page by page */
    l4_fpage_unmap(l4_fpage(SP_WIN, L4_SUPERPAGESHIFT, 0, 0), L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES);
    return 0;
}

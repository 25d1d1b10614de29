/* servers/ktest/t_mem.c: page faults as IPC to the pager, fpage_unmap, the sigma0 protocol. */
#include "ktest.h"

static volatile unsigned seen[4];
static volatile l4_umword_t fault_word[2];

static void toucher(void *arg)
{
    (void)arg;
    volatile unsigned char *fresh = (volatile unsigned char *)FRESH_BASE;
    seen[0] = fresh[0];                         /* a read fault on fresh page 0 */
    fault_word[0] = pager_last_fault;
    fresh[PAGE + 8] = 0x5A;                     /* a write fault on fresh page 1 */
    fault_word[1] = pager_last_fault;
    seen[1] = fresh[PAGE];
    seen[2] = 1;
    l4_sleep_forever();
}

int test_pagefault_pager(void)
{
    memset((void *)seen, 0, sizeof seen);
    unsigned before = pager_faults;
    spawn(5, toucher, 0);
    sleep_ms(2);
    CHECK(seen[2] == 1, "the task did not get through its faults");
    CHECK(seen[0] == 0xA0 && seen[1] == 0xA1, "it read %#x %#x", seen[0], seen[1]);
    CHECK(fresh_frames[1][8] == 0x5A, "its write did not land in the pager's page");
    CHECK(fault_word[0] == FRESH_BASE, "read fault word %#x", fault_word[0]);
    CHECK(fault_word[1] == (FRESH_BASE + PAGE + 8) + L4_PF_WRITE, "write fault word %#x",
          fault_word[1]);
    CHECK(pager_faults - before >= 4, "only %u faults", pager_faults - before);
    fresh_frames[1][8] = 0;
    kill(5);
    return 0;
}

static void unmapper(void *arg)
{
    (void)arg;
    volatile unsigned char *fresh = (volatile unsigned char *)(FRESH_BASE + 2 * PAGE);
    seen[0] = fresh[0];
    unsigned before = pager_fresh_faults;
    seen[1] = fresh[1];                         /* mapped: no fault */
    seen[2] = pager_fresh_faults - before;
    l4_fpage_unmap(l4_fpage(FRESH_BASE + 2 * PAGE, L4_PAGESHIFT, 0, 0),
                   L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES);
    seen[1] = fresh[2];                         /* unmapped: the pager again */
    seen[3] = pager_fresh_faults - before;
    l4_sleep_forever();
}

int test_fpage_unmap(void)
{
    memset((void *)seen, 0, sizeof seen);
    seen[3] = 99;
    spawn(5, unmapper, 0);
    sleep_ms(2);
    CHECK(seen[0] == 0xA2, "first read %#x", seen[0]);
    CHECK(seen[2] == 0, "%u faults on a mapped page", seen[2]);
    CHECK(seen[3] == 1, "%u faults after fpage_unmap (want 1)", seen[3]);
    kill(5);
    return 0;
}

/* ask sigma0 for `addr` (or L4_SIGMA0_ANY_PAGE) into the window at `window` */
static int sigma0_get(l4_umword_t addr, l4_umword_t window, l4_umword_t *got, l4_msgdope_t *dope)
{
    l4_umword_t w1;
    return l4_ipc_call(L4_SIGMA0_ID, L4_IPC_SHORT_MSG, addr, 0,
                       l4_rcv_window(l4_fpage(window, L4_PAGESHIFT, 0, 0)), got, &w1,
                       RCV_MS(100), dope);
}

static volatile l4_umword_t child_page;
static volatile int child_result;

static void sigma0_asker(void *arg)
{
    (void)arg;
    l4_umword_t got = 0;
    l4_msgdope_t dope = 0;
    int err = sigma0_get(child_page, 0x6A000000, &got, &dope);
    child_result = err ? 0x100 | err : (dope & L4_IPC_DOPE_FPAGE_RECEIVED) ? 1 : 2;
    l4_sleep_forever();
}

/* V2 clans: a task the root task created asks sigma0 (outside the root task's clan) through
 * its chief.  Its request is redirected to the root task, which forwards it as the task
 * (deceit: sigma0 sees the true asker) and receives sigma0's answer, also redirected (it enters
 * the root task's clan), into `window`; then it forwards the answer as sigma0, mapping on what
 * it got.  0 when everything went as V2 says. */
static int relay_to_sigma0(l4_threadid_t child, l4_umword_t window)
{
    l4_ipc_deceit_ids_t ids = {L4_NIL_ID, child};
    l4_umword_t w0, w1;
    l4_msgdope_t dope;
    int err = l4_ipc_wait_redirect(&ids, L4_IPC_SHORT_MSG, &w0, &w1, RCV_MS(50), &dope);
    if (err || !(dope & L4_IPC_DOPE_REDIRECTED) || !(dope & L4_IPC_DOPE_SRC_INSIDE) ||
        !l4_same(ids.dest, L4_SIGMA0_ID) || !l4_same(ids.true_src, child))
        return 0x1000 | err | dope;
    struct l4_regs r = {L4_IPC_SHORT_MSG | L4_IPC_DECEIT, l4_ipc_timeout(50000, 100000), w0, w1,
                        L4_SIGMA0_ID.low, L4_SIGMA0_ID.high,
                        l4_rcv_window(l4_fpage(window, L4_PAGESHIFT, 0, 0))};
    l4_syscall_vsrc(&r, child.low, child.high);
    if ((r.eax & L4_IPC_ERROR_MASK) || (r.eax & (L4_IPC_DOPE_REDIRECTED | L4_IPC_DOPE_SRC_INSIDE))
        != L4_IPC_DOPE_REDIRECTED || r.ecx != child.low || r.ebp != child.high)
        return 0x2000 | r.eax;
    l4_ipc_deceit_ids_t back = {child, L4_SIGMA0_ID};
    if (r.eax & L4_IPC_DOPE_FPAGE_RECEIVED)
        err = l4_ipc_send_deceiting(back, L4_IPC_SHORT_FPAGE, r.edx,
                                    l4_fpage(window, L4_PAGESHIFT, 1, 0), SND_MS(50), 0);
    else
        err = l4_ipc_send_deceiting(back, L4_IPC_SHORT_MSG, r.edx, r.ebx, SND_MS(50), 0);
    return err ? 0x3000 | err : 0;
}

int test_sigma0_protocol(void)
{
    l4_umword_t p1, p2;
    l4_msgdope_t dope;
    int err = sigma0_get(L4_SIGMA0_ANY_PAGE, 0x60000000, &p1, &dope);
    CHECK(err == 0 && (dope & L4_IPC_DOPE_FPAGE_RECEIVED), "any page: %#x %#x", err, dope);
    CHECK(p1 >= 0x100000 && !(p1 & (PAGE - 1)), "any page at %#x", p1);
    /* the same frame again, idempotently, into a second window */
    err = sigma0_get(p1, 0x60001000, &p2, &dope);
    CHECK(err == 0 && (dope & L4_IPC_DOPE_FPAGE_RECEIVED) && p2 == p1, "again: %#x %#x %#x",
          err, dope, p2);
    volatile uint32_t *a = (volatile uint32_t *)0x60000000, *b = (volatile uint32_t *)0x60001000;
    *a = 0xCAFEF00D;
    CHECK(*b == 0xCAFEF00D, "the two windows are not one frame: %#x", *b);
    /* another task may not have it */
    child_page = p1;
    child_result = 0;
    l4_threadid_t t = spawn(5, sigma0_asker, 0);
    int relay = relay_to_sigma0(t, 0x6B000000);
    sleep_ms(1);
    CHECK(relay == 0, "relaying to sigma0: %#x", relay);
    CHECK(child_result == 2, "another task asked for it: result %#x", child_result);
    kill(5);
    /* nobody owns the next page: the task gets it */
    child_page = p1 + 64 * PAGE;
    child_result = 0;
    t = spawn(5, sigma0_asker, 0);
    relay = relay_to_sigma0(t, 0x6B001000);
    sleep_ms(1);
    CHECK(relay == 0, "relaying to sigma0: %#x", relay);
    CHECK(child_result == 1, "a free page: result %#x", child_result);
    kill(5);
    /* kernel memory is never handed out */
    err = sigma0_get(l4_kip_word(L4_KIP_RESERVED1), 0x60002000, &p2, &dope);
    CHECK(err == 0 && !(dope & L4_IPC_DOPE_FPAGE_RECEIVED), "kernel pool: %#x", dope);
    err = sigma0_get(0x100000, 0x60002000, &p2, &dope);
    CHECK(err == 0 && !(dope & L4_IPC_DOPE_FPAGE_RECEIVED), "kernel image: %#x", dope);
    /* the KIP request */
    l4_umword_t k0, k1;
    err = l4_ipc_call(L4_SIGMA0_ID, L4_IPC_SHORT_MSG, L4_SIGMA0_KIP_REQUEST, 1,
                      L4_IPC_SHORT_MSG, &k0, &k1, RCV_MS(100), &dope);
    CHECK(err == 0 && k0 == L4_KIP_ADDR && !(dope & L4_IPC_DOPE_FPAGE_RECEIVED),
          "KIP request: %#x %#x", err, k0);
    l4_fpage_unmap(l4_fpage(0x60000000, 13, 0, 0), L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES);
    return 0;
}

int test_sigma0_superpage(void)
{
    const l4_umword_t phys = 0x02000000, window = 0x64000000;
    l4_umword_t got, w1;
    l4_msgdope_t dope;
    int err = l4_ipc_call(L4_SIGMA0_ID, L4_IPC_SHORT_MSG, phys | L4_SIGMA0_SUPERPAGE_BIT,
                          l4_fpage(0, L4_SUPERPAGESHIFT, 0, 0),
                          l4_rcv_window(l4_fpage(window, L4_SUPERPAGESHIFT, 0, 0)), &got, &w1,
                          RCV_MS(100), &dope);
    CHECK(err == 0 && (dope & L4_IPC_DOPE_FPAGE_RECEIVED), "err %#x dope %#x", err, dope);
    CHECK(got == phys && ((w1 >> 2) & 0x3F) == L4_SUPERPAGESHIFT, "got %#x %#x", got, w1);
    volatile uint32_t *p = (volatile uint32_t *)(window + 0x3FF000);
    *p = 0x5eb0;
    CHECK(*p == 0x5eb0, "last page of the 4 MiB");
    /* a single page inside it is the asker's already: idempotent */
    err = sigma0_get(phys + 0x3FF000, 0x60003000, &got, &dope);
    CHECK(err == 0 && (dope & L4_IPC_DOPE_FPAGE_RECEIVED), "page inside: %#x", dope);
    CHECK(*(volatile uint32_t *)0x60003000 == 0x5eb0, "not the same frame");
    l4_fpage_unmap(l4_fpage(window, L4_SUPERPAGESHIFT, 0, 0), L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES);
    l4_fpage_unmap(l4_fpage(0x60003000, L4_PAGESHIFT, 0, 0), L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES);
    return 0;
}

/* The mapping database: A (the root task) maps a page it has from sigma0 to B (task 5), B maps
 * it on to C (task 6); then one of them revokes.  A thread whose page is gone faults to the
 * pager, which refuses these addresses: it stays blocked and pager_refused counts it. */
#define MDB_A 0x6A000000u
#define MDB_B 0x6A100000u
#define MDB_C 0x6A200000u
enum { MDB_A_FLUSH, MDB_B_FLUSH_OWN, MDB_A_READONLY, MDB_B_GRANTS, MDB_A_OVERWRITES };
static volatile int mdb_mode, mdb_go, mdb_b_sent, mdb_c_got, mdb_b_read, mdb_c_read,
    mdb_b_done, mdb_c_done;
static volatile unsigned mdb_b_val, mdb_c_val, mdb_b_val2;
static l4_threadid_t mdb_c_id;

static void mdb_wait_go(void)
{
    while (!mdb_go)
        sleep_ms(1);
}

static void mdb_c(void *arg)
{
    (void)arg;
    l4_threadid_t src;
    l4_umword_t w0, w1;
    l4_msgdope_t dope;
    int err = l4_ipc_wait(&src, l4_rcv_window(l4_fpage(MDB_C, L4_PAGESHIFT, 0, 0)), &w0, &w1,
                          L4_IPC_NEVER, &dope);
    mdb_c_val = err ? 0xDEAD : *(volatile unsigned *)MDB_C;
    mdb_c_got = 1;
    mdb_wait_go();
    (void)*(volatile unsigned *)MDB_C;
    mdb_c_read = 1;
    *(volatile unsigned *)MDB_C = 0xC;
    mdb_c_done = 1;
    l4_sleep_forever();
}

static void mdb_b(void *arg)
{
    (void)arg;
    l4_threadid_t src;
    l4_umword_t w0, w1;
    l4_msgdope_t dope;
    int err = l4_ipc_wait(&src, l4_rcv_window(l4_fpage(MDB_B, L4_PAGESHIFT, 0, 0)), &w0, &w1,
                          L4_IPC_NEVER, &dope);
    mdb_b_val = err ? 0xDEAD : *(volatile unsigned *)MDB_B;
    l4_ipc_send(mdb_c_id, L4_IPC_SHORT_FPAGE, MDB_C,
                l4_fpage(MDB_B, L4_PAGESHIFT, 1, mdb_mode == MDB_B_GRANTS), L4_IPC_NEVER, &dope);
    if (mdb_mode == MDB_B_FLUSH_OWN) {
        while (!mdb_c_got)                      /* C has read it through its mapping */
            sleep_ms(1);
        l4_fpage_unmap(l4_fpage(MDB_B, L4_PAGESHIFT, 0, 0), L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES);
    }
    mdb_b_sent = 1;
    if (mdb_mode == MDB_A_OVERWRITES)           /* another page of A's over the first */
        l4_ipc_wait(&src, l4_rcv_window(l4_fpage(MDB_B, L4_PAGESHIFT, 0, 0)), &w0, &w1,
                    L4_IPC_NEVER, &dope);
    if (mdb_mode != MDB_B_GRANTS)
        mdb_wait_go();
    mdb_b_val2 = *(volatile unsigned *)MDB_B;
    mdb_b_read = 1;
    *(volatile unsigned *)MDB_B = 0xB;
    mdb_b_done = 1;
    l4_sleep_forever();
}

static int mdb_run(int mode)
{
    l4_umword_t got;
    l4_msgdope_t dope;
    int err = sigma0_get(L4_SIGMA0_ANY_PAGE, MDB_A, &got, &dope);
    CHECK(err == 0 && (dope & L4_IPC_DOPE_FPAGE_RECEIVED), "sigma0: %#x %#x", err, dope);
    volatile unsigned *a = (volatile unsigned *)MDB_A;
    const unsigned marker = 0x6D646230 + mode;
    *a = marker;
    mdb_mode = mode;
    mdb_go = mdb_b_sent = mdb_c_got = mdb_b_read = mdb_c_read = mdb_b_done = mdb_c_done = 0;
    mdb_b_val = mdb_c_val = 0;
    mdb_c_id = spawn(6, mdb_c, 0);
    l4_threadid_t b = spawn(5, mdb_b, 0);
    unsigned refused = pager_refused;
    err = l4_ipc_send(b, L4_IPC_SHORT_FPAGE, MDB_B, l4_fpage(MDB_A, L4_PAGESHIFT, 1, 0),
                      SND_MS(100), &dope);
    CHECK(err == 0, "map to B: %#x", err);
    for (int i = 0; i < 50 && !(mdb_b_sent && mdb_c_got); i++)
        sleep_ms(1);
    CHECK(mdb_b_sent && mdb_c_got, "B sent %d, C got %d", mdb_b_sent, mdb_c_got);
    CHECK(mdb_b_val == marker && mdb_c_val == marker, "B read %#x, C read %#x (want %#x)",
          mdb_b_val, mdb_c_val, marker);
    if (mode == MDB_B_GRANTS) {
        sleep_ms(2);
        CHECK(!mdb_b_read && pager_refused - refused == 1 &&
              (pager_last_refused & ~3u) == MDB_B, "after the grant B read %d, %u refusals at %#x",
              mdb_b_read, pager_refused - refused, pager_last_refused);
    }
    if (mode == MDB_A_FLUSH || mode == MDB_B_GRANTS)
        l4_fpage_unmap(l4_fpage(MDB_A, L4_PAGESHIFT, 0, 0), L4_FP_FLUSH_PAGE);
    if (mode == MDB_A_READONLY)
        l4_fpage_unmap(l4_fpage(MDB_A, L4_PAGESHIFT, 0, 0), L4_FP_REMAP_PAGE);
    if (mode == MDB_A_OVERWRITES) {
        err = sigma0_get(L4_SIGMA0_ANY_PAGE, MDB_A + PAGE, &got, &dope);
        CHECK(err == 0 && (dope & L4_IPC_DOPE_FPAGE_RECEIVED), "sigma0: %#x %#x", err, dope);
        *(volatile unsigned *)(MDB_A + PAGE) = marker + 0x100;
        err = l4_ipc_send(b, L4_IPC_SHORT_FPAGE, MDB_B, l4_fpage(MDB_A + PAGE, L4_PAGESHIFT, 1, 0),
                          SND_MS(100), &dope);
        CHECK(err == 0, "second map to B: %#x", err);
    }
    mdb_go = 1;
    sleep_ms(3);
    if (mode == MDB_A_OVERWRITES) {
        /* B's old mapping was revoked with what B had mapped from it: C lost it */
        CHECK(mdb_b_done && mdb_b_val2 == marker + 0x100 && !mdb_c_read,
              "B wrote %d and read %#x, C read %d", mdb_b_done, mdb_b_val2, mdb_c_read);
        CHECK(pager_refused - refused == 1, "%u refusals", pager_refused - refused);
        l4_fpage_unmap(l4_fpage(MDB_A + PAGE, L4_PAGESHIFT, 0, 0),
                       L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES);
    } else if (mode == MDB_A_READONLY) {
        CHECK(mdb_b_read && mdb_c_read && !mdb_b_done && !mdb_c_done,
              "read-only: B read %d wrote %d, C read %d wrote %d", mdb_b_read, mdb_b_done,
              mdb_c_read, mdb_c_done);
        CHECK(pager_refused - refused == 2 && (pager_last_refused & L4_PF_WRITE),
              "%u refusals, the last %#x", pager_refused - refused, pager_last_refused);
    } else {
        CHECK(!mdb_b_read && !mdb_c_read, "B read %d, C read %d after the unmap", mdb_b_read,
              mdb_c_read);
        CHECK(pager_refused - refused == 2, "%u refusals", pager_refused - refused);
    }
    CHECK(*a == marker, "A's own page reads %#x", *a);
    *a = marker + 1;                            /* still A's, still writable */
    CHECK(*a == marker + 1, "A's own page is not writable");
    kill(5);
    kill(6);
    /* with bit 31 A's own mapping goes too: a second look at the entry shows nothing left to
     * revoke, and a new mapping of the window would fault in afresh */
    l4_fpage_unmap(l4_fpage(MDB_A, L4_PAGESHIFT, 0, 0), L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES);
    return 0;
}

int test_fpage_unmap_recursive(void) { return mdb_run(MDB_A_FLUSH); }
int test_fpage_unmap_own(void) { return mdb_run(MDB_B_FLUSH_OWN); }
int test_fpage_remap_readonly(void) { return mdb_run(MDB_A_READONLY); }
int test_fpage_grant_moves(void) { return mdb_run(MDB_B_GRANTS); }
int test_fpage_map_overwrites(void) { return mdb_run(MDB_A_OVERWRITES); }

/* A cycle: B maps A's page back onto A's own mapping of it.  The old mapping is revoked first,
 * and with it B's (the source): nothing is left, and the kernel stays consistent; sigma0
 * hands the frame to A again. */
static volatile int cycle_done;

static void cycle_b(void *arg)
{
    (void)arg;
    l4_threadid_t src;
    l4_umword_t w0, w1;
    l4_msgdope_t dope;
    l4_ipc_wait(&src, l4_rcv_window(l4_fpage(MDB_B, L4_PAGESHIFT, 0, 0)), &w0, &w1, L4_IPC_NEVER,
                &dope);
    l4_ipc_send(root_id, L4_IPC_SHORT_FPAGE, MDB_A, l4_fpage(MDB_B, L4_PAGESHIFT, 1, 0),
                L4_IPC_NEVER, &dope);
    cycle_done = 1;
    l4_sleep_forever();
}

int test_fpage_map_cycle(void)
{
    l4_umword_t got, again, w0, w1;
    l4_msgdope_t dope;
    int err = sigma0_get(L4_SIGMA0_ANY_PAGE, MDB_A, &got, &dope);
    CHECK(err == 0 && (dope & L4_IPC_DOPE_FPAGE_RECEIVED), "sigma0: %#x %#x", err, dope);
    volatile unsigned *a = (volatile unsigned *)MDB_A;
    *a = 0x6379636C;
    cycle_done = 0;
    l4_threadid_t b = spawn(5, cycle_b, 0);
    err = l4_ipc_send(b, L4_IPC_SHORT_FPAGE, MDB_B, l4_fpage(MDB_A, L4_PAGESHIFT, 1, 0),
                      SND_MS(100), &dope);
    CHECK(err == 0, "map to B: %#x", err);
    err = l4_ipc_receive(b, l4_rcv_window(l4_fpage(MDB_A, L4_PAGESHIFT, 0, 0)), &w0, &w1,
                         RCV_MS(100), &dope);
    sleep_ms(1);                                /* B runs on after its send */
    CHECK(err == 0 && cycle_done, "map back: %#x, done %d", err, cycle_done);
    err = sigma0_get(got, MDB_A, &again, &dope);
    CHECK(err == 0 && (dope & L4_IPC_DOPE_FPAGE_RECEIVED) && again == got,
          "sigma0 again: %#x %#x %#x", err, dope, again);
    CHECK(*a == 0x6379636C, "the frame reads %#x", *a);
    kill(5);
    l4_fpage_unmap(l4_fpage(MDB_A, L4_PAGESHIFT, 0, 0), L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES);
    return 0;
}

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
    spawn(5, sigma0_asker, 0);
    sleep_ms(2);
    CHECK(child_result == 2, "another task asked for it: result %#x", child_result);
    kill(5);
    /* nobody owns the next page: the task gets it */
    child_page = p1 + 64 * PAGE;
    child_result = 0;
    spawn(5, sigma0_asker, 0);
    sleep_ms(2);
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

/* servers/sigma0/main.c: sigma0, the root pager.  It owns all user memory: the kernel maps every
 * page of RAM that is not kernel memory 1:1 into sigma0's address space at boot, and sigma0
 * maps pages on to whoever asks, by the sigma0 protocol (Hazelnut apps/sigma0):
 *
 *   dword 0 = address (a page fault, or an explicit request; bits 0-1 are flags)
 *                    -> that 4 KiB page, mapped writable, if it is free or already the
 *                       asker's (idempotent: asking again maps the same frame again)
 *   dword 0 = address | 1, dword 1 = an fpage of size 22
 *                    -> the 4 MiB page holding it, if all of it is free or the asker's
 *   dword 0 = L4_SIGMA0_ANY_PAGE -> any free 4 KiB page
 *   dword 0 = 1, dword 1 & 0xFF = 1 -> where the KIP is (a short reply: dword 0 = its address;
 *                       l4emu maps the KIP in every task already)
 *
 * Ownership is per task: a page given to one task is refused (a short reply, no fpage) to any
 * other.  Kernel memory (KIP reserved0/1) is never given; the boot modules (semi-reserved) and
 * the first MiB (dedicated) are given only when asked for by address, never as "any page".
 * The owner table (2 bytes per page) lives in the last pages of RAM, owned by sigma0. */
#include <l4/l4.h>
#include <l4/kdebug.h>
#include <libc.h>

#define PAGE 4096u
#define OWNER_FREE 0x0000u          /* free, any request */
#define OWNER_ON_REQUEST 0xFFFEu    /* free, but only when asked for by address */
#define OWNER_NEVER 0xFFFFu         /* kernel memory, or not RAM */

static uint16_t *owner;             /* per page: task number + 1, or one of the above */
static unsigned npages;
static unsigned any_cursor;

static void mark(uint32_t low, uint32_t high, uint16_t value)
{
    for (uint32_t p = low / PAGE; p < (high + PAGE - 1) / PAGE && p < npages; p++)
        owner[p] = value;
}

static void setup(void)
{
    uint32_t high = l4_kip_word(L4_KIP_MAIN_MEMORY + 4);
    npages = high / PAGE;
    uint32_t table_bytes = (npages * 2 + PAGE - 1) & ~(PAGE - 1);
    uint32_t table = high - table_bytes;        /* the last pages of RAM: free at boot */
    owner = (uint16_t *)(uintptr_t)table;
    memset(owner, 0, npages * 2);
    mark(l4_kip_word(L4_KIP_RESERVED0), l4_kip_word(L4_KIP_RESERVED0 + 4), OWNER_NEVER);
    mark(l4_kip_word(L4_KIP_RESERVED1), l4_kip_word(L4_KIP_RESERVED1 + 4), OWNER_NEVER);
    mark(l4_kip_word(L4_KIP_SEMI_RESERVED), l4_kip_word(L4_KIP_SEMI_RESERVED + 4),
         OWNER_ON_REQUEST);
    mark(l4_kip_word(L4_KIP_DEDICATED), l4_kip_word(L4_KIP_DEDICATED + 4), OWNER_ON_REQUEST);
    mark(table, high, L4_SIGMA0_TASK + 1);
    any_cursor = 0x100000 / PAGE;
    unsigned free = 0;
    for (unsigned p = 0; p < npages; p++)
        free += owner[p] == OWNER_FREE;
    printf("sigma0: %u KiB of RAM, %u pages free to hand out\n", high / 1024, free);
}

/* May `task` have page p?  If so it is now the task's. */
static int take(unsigned p, unsigned task)
{
    if (p >= npages)
        return 0;
    uint16_t o = owner[p];
    if (o == OWNER_FREE || o == OWNER_ON_REQUEST || o == task + 1) {
        owner[p] = (uint16_t)(task + 1);
        return 1;
    }
    return 0;
}

static int take_super(unsigned first, unsigned task)
{
    if (first + 1024 > npages)
        return 0;
    for (unsigned p = first; p < first + 1024; p++)
        if (owner[p] != OWNER_FREE && owner[p] != task + 1)
            return 0;
    for (unsigned p = first; p < first + 1024; p++)
        owner[p] = (uint16_t)(task + 1);
    return 1;
}

static int find_any(unsigned task, unsigned *page)
{
    for (unsigned n = 0; n < npages; n++) {
        unsigned p = any_cursor++;
        if (any_cursor >= npages)
            any_cursor = 0x100000 / PAGE;
        if (owner[p] == OWNER_FREE) {
            owner[p] = (uint16_t)(task + 1);
            *page = p;
            return 1;
        }
    }
    return 0;
}

/* Work out the reply to request (w0, w1) from `client`. */
static void answer(l4_threadid_t client, l4_umword_t w0, l4_umword_t w1, l4_umword_t *desc,
                   l4_umword_t *r0, l4_umword_t *r1)
{
    unsigned task = l4_task_of(client);
    unsigned page;
    *desc = L4_IPC_SHORT_MSG;
    *r0 = 0;
    *r1 = 0;
    if (w0 == L4_SIGMA0_KIP_REQUEST && (w1 & 0xFF) == 1) {
        *r0 = L4_KIP_ADDR;
        return;
    }
    if (w0 == L4_SIGMA0_ANY_PAGE) {
        if (find_any(task, &page)) {
            *desc = L4_IPC_SHORT_FPAGE;
            *r0 = page * PAGE;
            *r1 = l4_fpage(page * PAGE, L4_PAGESHIFT, 1, 0);
        }
        return;
    }
    if ((w0 & L4_SIGMA0_SUPERPAGE_BIT) &&
        ((w1 >> L4_FPAGE_SIZE_SHIFT) & L4_FPAGE_SIZE_MASK) == L4_SUPERPAGESHIFT) {
        l4_umword_t base = w0 & ~(L4_SUPERPAGE_SIZE - 1);
        if (take_super(base / PAGE, task)) {
            *desc = L4_IPC_SHORT_FPAGE;
            *r0 = base;
            *r1 = l4_fpage(base, L4_SUPERPAGESHIFT, 1, 0);
        }
        return;
    }
    l4_umword_t addr = w0 & ~(PAGE - 1);
    if (take(addr / PAGE, task)) {
        *desc = L4_IPC_SHORT_FPAGE;
        *r0 = addr;
        *r1 = l4_fpage(addr, L4_PAGESHIFT, 1, 0);
    }
}

int main(void)
{
    if (l4_kip_word(L4_KIP_MAGIC) != L4_KIP_MAGIC_VALUE) {
        enter_kdebug("sigma0: no kernel info page");
        l4_sleep_forever();
    }
    setup();
    l4_threadid_t client;
    l4_umword_t w0, w1, desc, r0, r1;
    int err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0);
    for (;;) {
        if (err) {
            /* A reply the client was not waiting for (send timeout 0), or a failed receive:
             * just wait for the next request. */
            err = l4_ipc_wait(&client, L4_IPC_SHORT_MSG, &w0, &w1, L4_IPC_NEVER, 0);
            continue;
        }
        answer(client, w0, w1, &desc, &r0, &r1);
        err = l4_ipc_reply_and_wait(client, desc, r0, r1, &client, L4_IPC_SHORT_MSG, &w0, &w1,
                                    L4_IPC_SEND_TIMEOUT_0, 0);
    }
}

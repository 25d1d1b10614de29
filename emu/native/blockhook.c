/*
 * blockhook.c - the run loop's native block callback (DESIGN D5).
 *
 * Unicorn calls l4emu_block_cb at the start of every translated block it is about to run,
 * with the block's virtual address and size in bytes.  The callback:
 *   - stops the run before the block when the instruction budget is spent (the host asks for
 *     a stop by zeroing the budget; uc_emu_stop from a block hook takes effect before the
 *     block executes);
 *   - stops it before a block that holds a breakpoint (the host steps up to one inside it);
 *   - otherwise adds the block's instruction count to the retired-instruction total.
 * Instruction counts per block come from a table keyed by the block's physical address and
 * size (the virtual address is translated through the live page tables, so a page mapped
 * elsewhere, or another address space, never reuses a count) that Python fills: on a miss
 * the callback stops the run, Python asks Unicorn for the block's instruction count
 * (uc_ctl_request_cache) and resumes.
 *
 * Counts must follow the code when the guest rewrites it.  Unicorn notices guest stores into
 * translated code and retranslates, but says nothing to hooks, so this file watches the
 * frames that hold counted code itself: they are write-protected on the host (mprotect), and
 * the first store into one - by the guest, a device or the host - takes a SIGSEGV that
 * unprotects the frame and bumps its generation; counts learned under an older generation
 * are learned again.  A frame that keeps being written (code next to busy data) stops being
 * protected and becomes "volatile": its blocks are checked against a hash of their bytes at
 * every lookup instead.
 *
 * No Python runs here: this is what keeps deterministic budgets almost free.
 */
#include <Python.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef int (*uc_stop_fn)(void *uc);

struct bh_entry {
    uint64_t pa;     /* physical address of the block's first byte */
    uint64_t hash;   /* of its bytes when learned (checked in volatile frames) */
    uint32_t size;   /* 0 marks an empty slot */
    uint32_t icount;
    uint32_t f1;     /* frame of its last byte (pa >> 12 unless it spans two pages) */
    uint32_t gen0;   /* generations of its frames when learned */
    uint32_t gen1;
    uint32_t flags;  /* BLOCK_* */
};
#define BLOCK_WRITES_CR3 1   /* it ends with `mov cr3, r32` (which always ends a block) */

/* The by-address cache in front of the table (block_slow): the last count found for a block
 * address, with the physical address it was found under and the epoch it was valid in. */
struct va_entry {
    uint32_t va;
    uint32_t pa;              /* the block's frame << 12 | where its TLB entry was last found:
                                 0-7 the victim TLB's slot (its page's slot: any of them) */
    uint32_t epoch;
    uint16_t size;
    uint16_t icount;          /* with VA_WRITES_CR3 for BLOCK_WRITES_CR3 */
};
#define VA_WRITES_CR3 0x8000u
#define VA_CACHE_BITS 10

/* Unicorn 2.1.4's software TLB (qemu/include/exec/cpu-defs.h, x86_64 target): one
 * CPUTLBDescFast per MMU index, entries of 64 bytes. */
struct tlb_fast {
    uint64_t mask;         /* (entries - 1) << 6 */
    struct tlb_entry *table;
};
struct tlb_entry {
    uint64_t addr_read, addr_write, addr_code, paddr, addend, pad[3];
};
/* CPUTLBDesc: what the fast path does not read, among it the 8-entry victim TLB that
 * entries evicted from the table go to (and come back from on their next use). */
struct tlb_desc {
    uint64_t large_page_addr, large_page_mask;
    int64_t window_begin_ns;
    uint64_t window_max_entries, n_used_entries, vindex;
    struct tlb_entry vtable[8];
    struct { uint64_t addr; uint32_t attrs, pad; } viotlb[8];
    void *iotlb;
};
/* Entries kept across CR3 writes, per address space (keep_*). */
#define KEEP_SPACES 256             /* four-way by CR3: a ring of 64 tasks keeps its entries */
#define KEEP_WAYS 4
#define KEEP_SLOTS 8
#define KEEP_STALE 128              /* epochs of its space a kept entry lives unconfirmed */
struct keep_entry {
    struct tlb_entry e;
    uint64_t io_addr;         /* its CPUIOTLBEntry */
    uint64_t io_attrs;
};
struct keep_space {
    uint64_t cr0, cr4;              /* as when its entries were kept */
    uint32_t epochs, pad;           /* its epochs so far */
    uint32_t scan_at, scan_gap;     /* keep_epoch_pages: not before epoch scan_at */
    uint64_t key[KEEP_SLOTS];       /* per slot: page | MMU index | 4; 0: empty (one line) */
    uint32_t seen[KEEP_SLOTS];      /* per slot: the epoch it was last met in use in */
    struct keep_entry slot[KEEP_SLOTS];
};
struct tlb_keep {
    uint64_t clock;
    struct keep_space *cur;         /* the space of this epoch */
    uint64_t cr3[KEEP_SPACES];      /* per space: its CR3, valid while used != 0 */
    uint64_t used[KEEP_SPACES];     /* per space: the clock of its last epoch; 0: free */
    struct keep_space space[KEEP_SPACES];
};
#define TLB_NOTDIRTY 0x400u
#define HF_SMAP 0x800000u
#define EFLAGS_AC 0x40000u

/* A segment cache of env->segs[] (target/i386/cpu.h SegmentCache). */
struct seg_cache {
    uint32_t selector;
    uint32_t pad;
    uint64_t base;
    uint32_t limit;
    uint32_t flags;
};

enum { STOP_NONE = 0, STOP_BUDGET = 1, STOP_MISS = 3, STOP_WATCH = 4, STOP_LIMIT = 5,
       STOP_BREAK = 6 };

/* Per-frame write state: protected on the host, volatile, and a count of write faults. */
/* WS_CODE: the frame has held counted code (never cleared).  WS_FASTW: stores to it have been
 * let through Unicorn's fast path (see fast_writes).  The write-fault count sits above. */
enum { WS_PROTECTED = 1, WS_VOLATILE = 2, WS_CODE = 4, WS_FASTW = 8, WS_COUNT_ONE = 16,
       WS_COUNT_SHIFT = 4, WS_VOLATILE_AFTER = 8 };

/* Shared with Python through ctypes (emu/cpu.py mirrors this layout).  The fields the
 * callback touches on every block come first, in one cache line. */
struct bh_state {
    uint64_t total;        /* retired instructions, counted a whole block at a time */
    uint64_t budget;       /* stop before any block that starts at total >= budget; the host
                              sets it to 0 to stop at the next block */
    uint64_t limit;        /* never run a block that would end past this count: the run stops
                              before it (STOP_LIMIT) and the host finishes it exactly */
    uint64_t fast_bound;   /* the last block may run again at once while total + its count
                              stays <= this: min(limit, budget - 1 + count), 0 while an
                              interrupt waits.  The host zeroes it whenever it changes the
                              budget, the limit or irq_waiting, sending the next block the
                              slow way, which recomputes it. */
    uint64_t last_va;      /* the last block counted: its key and count (last_size 0: none) */
    uint32_t last_size;
    uint32_t last_icount;
    uint32_t irq_waiting;  /* an interrupt is pending but EFLAGS.IF was clear or a shadow on */
    uint32_t stopped;      /* why the callback stopped the run (STOP_*) */
    const uint64_t *cr3;   /* &env->cr[3] of the live CPU (cr[0] and cr[4] around it) */
    const uint64_t *eflags;  /* &env->eflags (IF lives there) */
    const uint32_t *hflags;  /* &env->hflags (the interrupt shadow lives there) */
    uc_stop_fn emu_stop;
    uint64_t miss_va;      /* STOP_MISS: the block that has no (valid) entry */
    uint64_t miss_pa;      /* its physical address, or NO_PA when it has none in RAM */
    uint32_t miss_size;
    uint32_t watch_hit;    /* a watchpoint's memory hook fired during the last instruction */
    struct bh_entry *table;
    uint64_t mask;         /* table size - 1 (a power of two) */
    uint64_t used;
    uint32_t cut_icount;   /* STOP_LIMIT: the instruction count of the block not started */
    uint32_t miss_f1;      /* STOP_MISS: the frame of the block's last byte */
    /* Guest RAM and its frames' write state (l4emu_wp_attach). */
    uint8_t *ram;
    uint64_t ram_size;
    uint32_t *gen;         /* per frame: bumped by every write fault */
    uint8_t *wstate;       /* per frame: WS_* */
    uint64_t a20_mask;     /* physical address mask: bit 20 clear while the A20 gate is */
    uint64_t write_faults; /* statistics */
    uint64_t relearned;
    uint32_t last_f0;      /* the frames of the last block counted by a lookup */
    uint32_t last_f1;
    uint64_t once_va;      /* a block with no physical key (outside RAM, PAE paging): its */
    uint32_t once_size;    /* count, for its next run only (Python sets it at each miss) */
    uint32_t once_icount;
    /* Fast guest stores (fast_writes): Unicorn's TLB for the three MMU indexes (env->neg.tlb.f,
     * just below env), the guest registers and segment caches, on/off, and statistics. */
    struct tlb_fast *tlb;
    struct tlb_desc *tlbd;         /* env->neg.tlb.d, the three MMU indexes */
    const uint64_t *regs;
    const struct seg_cache *segs;
    uint32_t fastw;        /* 1: on; 0 while memory hooks (watchpoints) need the slow path */
    uint32_t fastw_flush;  /* set by l4emu_block_insert: code landed in a fast-written frame */
    uint64_t fastw_clears;
    uint64_t fastw_cr3;    /* CR3 when the pages below were settled (NO_VA: flushed since) */
    uint64_t fastw_done[4];  /* settled pages | MMU index: per index, and the TSS's */
    const uint8_t *fastw_esp0;  /* TSS.ESP0 in RAM, for this CR3 (NULL: not looked up) */
    struct tlb_keep *keep;      /* TLB entries kept per address space (keep_*), or NULL */
    uint64_t keep_code[3];      /* per MMU index: the code page kept in this epoch | 1 */
    uint64_t kept;              /* statistics: entries put back after a CR3 write */
    uint32_t keep_off;          /* 1: keep nothing (Cpu.keep_tlb = False) */
    uint32_t keep_pad;
    struct va_entry *vcache;    /* 2^VA_CACHE_BITS entries by block address, or NULL */
    uint32_t vc_epoch;          /* entries of another epoch are empty (0: none is valid) */
    uint32_t vc_off;            /* 1: cache nothing (Cpu.va_cache = False) */
    uint64_t vc_hits;           /* statistics */
    uint64_t keep_mark[3];      /* per MMU index, just after keep_restore: the used entries */
    uint64_t keep_vmark[3];     /* and the victim TLB's next-slot counter (keep_epoch_pages) */
    uint64_t kept_aside;        /* statistics: of `kept`, those put in the victim TLB */
    uint64_t keep_scans;        /* statistics: keep_epoch_pages looking through the TLB */
    uint64_t victim_swaps;      /* statistics: victim_swap_in */
    /* Breakpoints (Machine.add_breakpoint), checked here rather than by code hooks: a block
     * that holds one is not run; the run stops before it (STOP_BREAK), and the host steps
     * up to a breakpoint inside the block.  No code hook means Unicorn need not check for a
     * stop after every code hook and memory access (Cpu.exit_checks). */
    const uint32_t *bps;        /* their addresses, sorted, or NULL */
    uint32_t n_bps;
    uint32_t bp_off;            /* 1: they do not stop the run (stepping, replay) */
    uint64_t bp_skip;           /* the one the run starts at: its block runs (NO_VA: none) */
    uint64_t bp_at;             /* STOP_BREAK: the breakpoint's address */
};

#define EFLAGS_IF 0x200
#define HF_INHIBIT_IRQ 0x8
#define CR0_PG 0x80000000u
#define CR4_PSE 0x10u
#define CR4_PAE 0x20u
#define NO_PA (~(uint64_t)0)
#define NO_VA (~(uint64_t)0)      /* last_va when there is no last block */
#define unlikely(x) __builtin_expect(!!(x), 0)

static inline uint64_t slot_of(const struct bh_state *s, uint64_t pa, uint32_t size)
{
    uint64_t h = pa * 0x9E3779B97F4A7C15ull ^ size;
    return (h ^ (h >> 29)) & s->mask;
}

static void stop(void *uc, struct bh_state *s, uint32_t why)
{
    s->stopped = why;
    s->emu_stop(uc);
}

/* The page-table entry at physical address `at` when it is in RAM and present, else 0 (a
 * present entry is never 0).  Both walkers here use it: phys_of (read-only, for the count
 * table) and sys_walk (native delivery, which also sets accessed and dirty bits). */
static inline uint32_t pt_entry(const uint8_t *ram, uint64_t ram_size, uint64_t at)
{
    uint32_t e;
    if (at + 4 > ram_size)
        return 0;
    memcpy(&e, ram + at, 4);
    return (e & 1) ? e : 0;
}

/* The physical address of `va` through the live page tables (32-bit, 4 KiB and 4 MiB pages),
 * read-only; NO_PA when it is not mapped to RAM (or PAE paging, which this does not walk). */
static uint64_t phys_of(const struct bh_state *s, uint32_t va)
{
    const uint64_t *cr = s->cr3 - 3;
    uint64_t pa;
    if (!(cr[0] & CR0_PG)) {
        pa = va;
    } else {
        if (cr[4] & CR4_PAE)
            return NO_PA;
        uint32_t pde = pt_entry(s->ram, s->ram_size,
                                ((cr[3] & 0xFFFFF000u) | ((va >> 20) & 0xFFC)) & s->a20_mask);
        if (!pde)
            return NO_PA;
        if ((pde & 0x80) && (cr[4] & CR4_PSE)) {
            pa = (pde & 0xFFC00000u) | (va & 0x3FFFFF);
        } else {
            uint32_t pte = pt_entry(s->ram, s->ram_size,
                                    ((pde & 0xFFFFF000u) | ((va >> 10) & 0xFFC)) & s->a20_mask);
            if (!pte)
                return NO_PA;
            pa = (pte & 0xFFFFF000u) | (va & 0xFFF);
        }
    }
    pa &= s->a20_mask;
    return pa < s->ram_size ? pa : NO_PA;
}

/* FNV-1a over the block's bytes: from pa to the end of its page, then on in frame f1. */
static uint64_t bytes_hash(const struct bh_state *s, uint64_t pa, uint32_t f1, uint32_t size)
{
    uint64_t h = 0xCBF29CE484222325ull;
    uint32_t first = 0x1000 - (uint32_t)(pa & 0xFFF);
    const uint8_t *p = s->ram + pa;
    for (uint32_t i = 0; i < size; i++) {
        if (i == first)
            p = s->ram + ((uint64_t)f1 << 12) - first;
        h = (h ^ p[i]) * 0x100000001B3ull;
    }
    return h;
}

/* Do the block's last bytes encode `mov cr3, r32` (0F 22 /r, mod 3, reg 3)?  An instruction
 * that only ends in those bytes would make this say yes wrongly; that costs a look at the
 * TLB (keep_epoch_pages), never a wrong count. */
static int ends_with_cr3_write(const struct bh_state *s, uint64_t pa, uint32_t f1, uint32_t size)
{
    uint8_t b[3];
    uint32_t first = 0x1000 - (uint32_t)(pa & 0xFFF);
    if (size < 3)
        return 0;
    for (uint32_t i = size - 3; i < size; i++)
        b[i - (size - 3)] = i < first ? s->ram[pa + i] : s->ram[((uint64_t)f1 << 12) + i - first];
    return b[0] == 0x0F && b[1] == 0x22 && (b[2] & 0xF8) == 0xD8;
}

/* Is the entry's count still that of the bytes in RAM? */
static inline int entry_valid(const struct bh_state *s, const struct bh_entry *e)
{
    uint32_t f0 = (uint32_t)(e->pa >> 12);
    if (e->gen0 != s->gen[f0] || e->gen1 != s->gen[e->f1])
        return 0;
    if (unlikely((s->wstate[f0] | s->wstate[e->f1]) & WS_VOLATILE))
        return bytes_hash(s, e->pa, e->f1, e->size) == e->hash;
    return 1;
}

/* A count, once found valid in the table, is cached by the block's virtual address, so that
 * the next run of the block needs neither the table (a random line of a large array) nor the
 * frames' generations: Unicorn's TLB entry for the block's page, which the code was just
 * fetched through, must still give the same physical address, and nothing may have changed
 * any count since (the epoch: every write fault, learned block and forgotten frame moves it
 * on).  Blocks spanning two pages and blocks in volatile frames are never cached. */
static inline struct va_entry *va_slot(const struct bh_state *s, uint64_t va)
{
    uint32_t v = (uint32_t)va;
    return &s->vcache[((v >> 2) ^ (v >> 12)) & ((1u << VA_CACHE_BITS) - 1)];
}

static inline void va_invalidate(struct bh_state *s)
{
    if (++s->vc_epoch == 0) {             /* wrapped: entries of epoch 1 might look valid */
        if (s->vcache)
            memset(s->vcache, 0, sizeof(*s->vcache) << VA_CACHE_BITS);
        s->vc_epoch = 1;
    }
}

#define TLB_NONE (~(uint64_t)0)           /* an entry's address with no access of its kind */
#define TLB_DIRTY_OFF 32                    /* env->neg.tlb.c.dirty, before tlb.d */

/* The offset in guest RAM of `va` through TLB entry `e` (huge when it is not RAM). */
static inline uint64_t host_off(const struct bh_state *s, const struct tlb_entry *e, uint64_t va)
{
    return (uint64_t)((uintptr_t)(e->addend + va) - (uintptr_t)s->ram);
}

/* May stores to the RAM frame at `off` skip Unicorn's not-dirty check?  Only if it never held
 * counted code; the frame is then marked as let through (see fast_write_page). */
static inline int let_through(struct bh_state *s, uint64_t off)
{
    uint8_t *w = &s->wstate[off >> 12];
    if (*w & WS_CODE)
        return 0;
    *w |= WS_FASTW;
    return 1;
}

/* Does TLB entry `e` map `page` (for any access)?  Is it empty? */
static inline int entry_maps(const struct tlb_entry *e, uint64_t page)
{
    return e->addr_code == page || e->addr_read == page ||
           (e->addr_write & ~(uint64_t)TLB_NOTDIRTY) == page;
}

static inline int entry_empty(const struct tlb_entry *e)
{
    return e->addr_read == TLB_NONE && e->addr_write == TLB_NONE && e->addr_code == TLB_NONE;
}

/* The slot of `va`'s page in the table of `f`. */
static inline uint64_t tlb_index(const struct tlb_fast *f, uint64_t va)
{
    return (va >> 12) & (f->mask >> 6);
}

/* Does the victim TLB hold an entry for `page`? */
static inline int victim_holds(const struct tlb_desc *d, uint64_t page)
{
    for (const struct tlb_entry *v = d->vtable; v < d->vtable + 8; v++)
        if (entry_maps(v, page))
            return 1;
    return 0;
}

/* ---- TLB entries kept across CR3 writes --------------------------------------------------
 * Unicorn 2.1.4 empties its whole TLB at every CR3 write (QEMU keeps neither global pages
 * nor address-space tags), and refilling an entry costs about 2,000 host instructions (a
 * page walk through the memory API, the memory-region search, the entry).  Here a few
 * entries of each address space - the pages the stack, the TSS and the code of its blocks
 * live in - are copied aside while it runs, and when CR3 returns to that space they are put
 * back before the first block runs, each only after a walk of the page tables now in force
 * shows that a refill would build exactly the same entry: the same frame, the same access
 * rights, the accessed bits (and for a writable entry the dirty bit) already set, so that
 * the refill would write nothing either; CR0 and CR4 as when the entry was made; a 4 KiB
 * page, in RAM, in an empty slot.  What is put back is what the CPU would have loaded on its
 * first access (Intel SDM vol. 3 4.10.2.3: the processor may cache translations at any
 * time), so the guest sees no difference; a mapping changed or unmapped meanwhile fails the
 * walk and is simply refilled as before.  The host drops all kept entries whenever it
 * flushes the TLB itself (memory map, A20, snapshots). */
static struct keep_space *keep_space_of(struct tlb_keep *k, uint64_t cr3, uint64_t cr0,
                                        uint64_t cr4)
{
    uint32_t set = (uint32_t)(((cr3 >> 12) * 0x9E3779B1u) >> 16) % (KEEP_SPACES / KEEP_WAYS);
    uint32_t w = set * KEEP_WAYS, lru = w;
    k->clock++;
    for (; w < (set + 1) * KEEP_WAYS; w++) {
        if (k->used[w] && k->cr3[w] == cr3) {
            k->used[w] = k->clock;
            return &k->space[w];
        }
        if (k->used[w] < k->used[lru])
            lru = w;
    }
    struct keep_space *sp = &k->space[lru];      /* the way used longest ago, or a free one */
    memset(sp, 0, sizeof(*sp));
    sp->cr0 = cr0;
    sp->cr4 = cr4;
    k->cr3[lru] = cr3;
    k->used[lru] = k->clock;
    return sp;
}

/* Whether entries are kept at all; the space whose entries are kept in this epoch, or NULL. */
static inline int keep_on(const struct bh_state *s)
{
    return s->keep && !s->keep_off;
}

static inline struct keep_space *keeping(const struct bh_state *s)
{
    return keep_on(s) ? s->keep->cur : NULL;
}

/* The CPUIOTLBEntry {addr, attrs} of slot `index` of MMU index `idx`. */
static inline const uint64_t *iotlb_of(const struct bh_state *s, unsigned idx, uint64_t index)
{
    return (const uint64_t *)s->tlbd[idx].iotlb + 2 * index;
}

/* The space's slot for `key` (page | MMU index | 4; 0: a free one), or -1. */
static inline int keep_find(const struct keep_space *sp, uint64_t key)
{
    for (int i = 0; i < KEEP_SLOTS; i++)
        if (sp->key[i] == key)
            return i;
    return -1;
}

/* Copy aside the entry `e` of MMU index `idx` for `page` (and its CPUIOTLBEntry `io`) in this
 * epoch's space, when it may be put back later: RAM, no flag but the not-dirty mark, not part
 * of a large page.  A full space gives up the slot met in use longest ago.  Returns 1 when it
 * was kept. */
static int keep_entry(struct bh_state *s, unsigned idx, uint64_t page, const struct tlb_entry *e,
                      const uint64_t *io)
{
    struct keep_space *sp = keeping(s);
    if (!sp)
        return 0;
    const struct tlb_desc *d = &s->tlbd[idx];
    if (d->large_page_addr != ~(uint64_t)0 && (page & d->large_page_mask) == d->large_page_addr)
        return 0;
    if ((e->addr_read != TLB_NONE && e->addr_read != page) ||
        (e->addr_code != TLB_NONE && e->addr_code != page) ||
        (e->addr_write != TLB_NONE && (e->addr_write & ~(uint64_t)TLB_NOTDIRTY) != page))
        return 0;
    uint64_t off = host_off(s, e, page);
    if (off >= s->ram_size || (off & 0xFFF) || (e->paddr & 0xFFF))
        return 0;
    uint64_t key = page | idx | 4;
    int i = keep_find(sp, key);
    if (i < 0)
        i = keep_find(sp, 0);
    if (i < 0) {                                 /* full: the one met in use longest ago */
        i = 0;
        for (int j = 1; j < KEEP_SLOTS; j++)
            if (sp->seen[j] < sp->seen[i])
                i = j;
    }
    sp->key[i] = key;
    sp->seen[i] = sp->epochs;
    sp->slot[i].e = *e;
    sp->slot[i].io_addr = io[0];
    sp->slot[i].io_attrs = io[1];
    return 1;
}

/* The kept entry `key`, if any, was met in use in this epoch. */
static void keep_touch(struct bh_state *s, uint64_t key)
{
    struct keep_space *sp = keeping(s);
    int i = sp ? keep_find(sp, key) : -1;
    if (i >= 0)
        sp->seen[i] = sp->epochs;
}

/* Would a refill of `page` for MMU index `idx` under the page tables now in force build the
 * entry `e`, and write no accessed or dirty bit?  (target/i386/excp_helper.c, 32-bit
 * paging.) */
static int keep_still_valid(const struct bh_state *s, unsigned idx, uint64_t page,
                            const struct tlb_entry *e)
{
    const uint64_t *cr = s->cr3 - 3;
    uint32_t pde = pt_entry(s->ram, s->ram_size,
                            ((cr[3] & 0xFFFFF000u) | ((page >> 20) & 0xFFC)) & s->a20_mask);
    if (!pde || !(pde & 0x20) || ((pde & 0x80) && (cr[4] & CR4_PSE)))
        return 0;
    uint32_t pte = pt_entry(s->ram, s->ram_size,
                            ((pde & 0xFFFFF000u) | ((page >> 10) & 0xFFC)) & s->a20_mask);
    if (!pte || !(pte & 0x20))
        return 0;
    uint32_t ptep = pde & pte;                    /* RW and US of both levels */
    int user = idx == 1;
    if (user && !(ptep & 4))
        return 0;
    int rd = idx != 0 || !(ptep & 4);
    int wr = rd && (pte & 0x40) && ((ptep & 2) || (!user && !(cr[0] & 0x10000u)));
    int ex = user || !((cr[4] & 0x100000u) && (ptep & 4));
    if ((e->addr_read != TLB_NONE) != rd || (e->addr_write != TLB_NONE) != wr ||
        (e->addr_code != TLB_NONE) != ex)
        return 0;
    uint64_t pa = (pte & 0xFFFFF000u) & s->a20_mask;
    return e->paddr == pa && host_off(s, e, page) == pa;
}

/* A new epoch: CR3 now holds `cr3`.  Put back what was kept for that space. */
static void keep_restore(struct bh_state *s, uint64_t cr3)
{
    const uint64_t *cr = s->cr3 - 3;
    struct keep_space *sp = keep_space_of(s->keep, cr3, cr[0], cr[4]);
    s->keep->cur = sp;
    sp->epochs++;
    s->keep_code[0] = s->keep_code[1] = s->keep_code[2] = NO_VA;
    if (sp->cr0 != cr[0] || sp->cr4 != cr[4] || !(cr[0] & CR0_PG)) {
        memset(sp->key, 0, sizeof(sp->key));
        sp->cr0 = cr[0];
        sp->cr4 = cr[4];
        return;
    }
    for (int i = 0; i < KEEP_SLOTS; i++) {
        struct keep_entry *k = &sp->slot[i];
        if (!sp->key[i])
            continue;
        if (sp->epochs - sp->seen[i] > KEEP_STALE) {   /* not met in use for a while */
            sp->key[i] = 0;
            continue;
        }
        unsigned idx = (unsigned)(sp->key[i] & 3);
        uint64_t page = sp->key[i] & ~(uint64_t)0xFFF;
        struct tlb_fast *f = &s->tlb[idx];
        struct tlb_desc *d = &s->tlbd[idx];
        uint64_t index = tlb_index(f, page);
        struct tlb_entry *te = &f->table[index];
        int victim = !entry_empty(te);
        if (victim && (entry_maps(te, page) || victim_holds(d, page)))
            continue;                              /* refilled already */
        if (!keep_still_valid(s, idx, page, &k->e)) {
            sp->key[i] = 0;
            continue;
        }
        struct tlb_entry n = k->e;                 /* as a refill makes it: not dirty, then */
        if (n.addr_write != TLB_NONE)              /* let through as fast_writes would */
            n.addr_write = let_through(s, host_off(s, &n, page)) ? page : page | TLB_NOTDIRTY;
        uint64_t *io;
        if (victim) {
            /* Its slot was taken since the write (often by the code page of the block about
             * to run, which Unicorn refills before any callback): into the victim TLB, as
             * if the one in the slot had evicted it; the first access swaps it back in. */
            unsigned v = (unsigned)(d->vindex++ % 8);
            te = &d->vtable[v];
            io = &d->viotlb[v].addr;
            s->kept_aside++;
        } else {
            io = (uint64_t *)d->iotlb + 2 * index;
            d->n_used_entries++;
        }
        *te = n;
        io[0] = k->io_addr;
        io[1] = k->io_attrs;
        *(uint16_t *)((uint8_t *)s->tlbd - TLB_DIRTY_OFF) |= (uint16_t)(1u << idx);
        s->kept++;
    }
}

/* Keep the live entry `e` of MMU index `idx` if it is a RAM page not kept yet, let through
 * if it may be.  Returns 1 when it now has a slot. */
static int keep_fill(struct bh_state *s, unsigned idx, struct tlb_entry *e, const uint64_t *io)
{
    uint64_t page = e->addr_read != TLB_NONE ? e->addr_read : e->addr_code;
    if (page == TLB_NONE || (page & 0xFFF) || keep_find(s->keep->cur, page | idx | 4) >= 0)
        return 0;                                  /* empty, not plain RAM, or kept */
    uint64_t off = host_off(s, e, page);
    if (e->addr_write == (page | TLB_NOTDIRTY) && off < s->ram_size && !(off & 0xFFF) &&
        let_through(s, off))
        e->addr_write = page;
    return keep_entry(s, idx, page, e, io);
}

/* Before a block that writes CR3 (whose flush would lose them): the entries Unicorn filled in
 * this epoch beyond those put back, kept in the space's free slots.  A fill takes an empty
 * slot (Unicorn counts the used ones) or pushes the slot's entry into the victim TLB (whose
 * next-slot counter moves on); when neither count moved since the epoch began nothing new
 * is there, else the table and the victim TLB are looked through.  So a page the space
 * touches at every switch (a task's data, the TCB of the thread it sends to) is put back at
 * the next one, let through if it may be.  Nothing kept is pushed out for them. */
static void keep_epoch_pages(struct bh_state *s)
{
    struct keep_space *sp = s->keep->cur;
    unsigned filled = 0;
    for (unsigned idx = 0; idx < 3; idx++)
        if (s->tlbd[idx].n_used_entries != s->keep_mark[idx] ||
            s->tlbd[idx].vindex != s->keep_vmark[idx])
            filled |= 1u << idx;
    if (!filled || !sp || (int32_t)(sp->epochs - sp->scan_at) < 0 || keep_find(sp, 0) < 0)
        return;
    int found = 0;
    s->keep_scans++;
    for (unsigned idx = 0; idx < 3; idx++) {
        struct tlb_fast *f = &s->tlb[idx];
        struct tlb_desc *d = &s->tlbd[idx];
        if (!(filled & (1u << idx)))
            continue;
        for (uint64_t i = 0; i <= (f->mask >> 6) && keep_find(sp, 0) >= 0; i++)
            found += keep_fill(s, idx, &f->table[i], iotlb_of(s, idx, i));
        for (unsigned v = 0; v < 8 && keep_find(sp, 0) >= 0; v++)
            found += keep_fill(s, idx, &d->vtable[v], &d->viotlb[v].addr);
    }
    /* Nothing that could be kept (4 MiB pages, MMIO, the slots' pages only): look again
     * only after twice as many of the space's epochs as last time, up to 64. */
    sp->scan_gap = found ? 0 : (sp->scan_gap ? (sp->scan_gap < 64 ? sp->scan_gap * 2 : 64) : 1);
    sp->scan_at = sp->epochs + sp->scan_gap;
}

/* ---- fast guest stores --------------------------------------------------------------------
 * Unicorn 2.1.4 marks every TLB entry of a writable RAM page "not dirty" (TLB_NOTDIRTY), so
 * that a store to a page holding translated code invalidates that code.  The generated code
 * sends every store to such an entry down the slow store helper (a memory-region search,
 * the hooks, a search for code to invalidate), about 40 ns a store, and the helper only
 * clears the flag for pages that are not executable: on x86 without NX, none.  Here the flag
 * is cleared for the entry of the page a block is about to push to (the stack: calls,
 * interrupt frames, a thread's saved state), when its frame is guest RAM that has never held
 * counted code.  Every block Unicorn translates and runs is counted first (a miss stops the
 * run before the block), so such a frame holds no translation; when code does land in one,
 * l4emu_block_insert asks the host to flush the TLB (fastw_flush), which sets the flag again
 * on every entry, aliases included.  Memory hooks (watchpoints) need the slow path: the
 * host turns this off while they exist, and under PAE paging, whose code frames are not
 * tracked. */
static const uint32_t no_esp0 = 0;     /* TSS.ESP0 when the TSS is not in RAM */

/* When `page`'s entry waits in the victim TLB while another page holds its slot, swap the two,
 * as Unicorn does at the page's next access (from the slow path of that access: a helper
 * call out of the translated code).  For the kernel stack's page before each block: in a
 * 64-entry TLB it often shares a slot with the kernel's code page, which Unicorn swaps in at
 * every block it looks up, while the blocks chained after it push and pop. */
static inline void victim_swap_in(struct bh_state *s, unsigned idx, uint64_t page)
{
    struct tlb_fast *f = &s->tlb[idx];
    uint64_t index = tlb_index(f, page);
    struct tlb_entry *e = &f->table[index];
    if (e->addr_read == page || e->addr_read == TLB_NONE)
        return;
    struct tlb_desc *d = &s->tlbd[idx];
    for (unsigned v = 0; v < 8; v++)
        if (d->vtable[v].addr_read == page) {
            struct tlb_entry t = *e;
            *e = d->vtable[v];
            d->vtable[v] = t;
            uint64_t *io = (uint64_t *)d->iotlb + 2 * index, *vio = &d->viotlb[v].addr;
            uint64_t a = io[0], b = io[1];
            io[0] = vio[0];
            io[1] = vio[1];
            vio[0] = a;
            vio[1] = b;
            s->victim_swaps++;
            return;
        }
}

/* Clear the flag of `page`'s entry in MMU index `idx` if it may be.  Returns 1 when the
 * entry is settled (let through now or before, or never to be: not RAM, code, MMIO), 0 when
 * the page has no entry yet. */
static inline int fast_write_page(struct bh_state *s, unsigned idx, uint64_t page)
{
    struct tlb_fast *f = &s->tlb[idx];
    uint64_t index = tlb_index(f, page);
    struct tlb_entry *e = &f->table[index];
    const uint64_t *io = iotlb_of(s, idx, index);
    if ((e->addr_write & ~(uint64_t)0xFFF) != page) {
        /* Not in its slot.  When another page holds the slot, this one may be in the victim
         * TLB (put back there, or pushed there): an entry there is settled the same way. */
        struct tlb_desc *d = &s->tlbd[idx];
        if (entry_empty(e))
            return 0;
        unsigned v = 0;
        while (v < 8 && (d->vtable[v].addr_write & ~(uint64_t)0xFFF) != page)
            v++;
        if (v == 8)
            return 0;
        e = &d->vtable[v];
        io = &d->viotlb[v].addr;
    }
    if (e->addr_write == (page | TLB_NOTDIRTY)) {
        uint64_t off = host_off(s, e, page);
        if (off >= s->ram_size || (off & 0xFFF))
            return 1;
        if (let_through(s, off)) {
            e->addr_write = page;
            s->fastw_clears++;
        }
    }
    keep_entry(s, idx, page, e, io);
    return 1;
}

/* The pages tried before each counted block: the one the stack pushes to next, in the
 * current MMU index; in ring 0 the page of the TSS (kernels write ESP0 there at every thread
 * switch), and in ring 3 the page below TSS.ESP0, which the next entry to the kernel pushes
 * its frame to.  A page settled since the last CR3 change is not tried again (a CR3 write
 * flushes the TLB; the host sets fastw_cr3 to NO_VA whenever it flushes). */
static inline void fast_writes(struct bh_state *s, unsigned idx, uint64_t va)
{
    uint64_t cr3 = *s->cr3;
    if (cr3 != s->fastw_cr3) {
        if (s->cr3[1] & CR4_PAE)
            return;
        if (keep_on(s)) {
            if (s->fastw_cr3 == NO_VA)             /* the host flushed: nothing kept holds */
                memset(s->keep->used, 0, sizeof(s->keep->used));
            keep_restore(s, cr3);
            for (int i = 0; i < 3; i++) {
                s->keep_mark[i] = s->tlbd[i].n_used_entries;
                s->keep_vmark[i] = s->tlbd[i].vindex;
            }
        }
        s->fastw_cr3 = cr3;
        s->fastw_done[0] = s->fastw_done[1] = s->fastw_done[2] = s->fastw_done[3] = NO_VA;
        s->fastw_esp0 = NULL;
    }
    uint64_t sp = ((s->segs[2].base + (uint32_t)s->regs[4] - 4) & 0xFFFFF000u) | idx;
    if (idx != 1)
        victim_swap_in(s, idx, sp & ~(uint64_t)3);
    if (sp != s->fastw_done[idx] && fast_write_page(s, idx, sp & ~(uint64_t)3))
        s->fastw_done[idx] = sp;
    uint64_t cp = (va & ~(uint64_t)0xFFF) | idx;
    if (keeping(s) && cp != s->keep_code[idx]) {   /* its code's page, once an epoch */
        struct tlb_fast *f = &s->tlb[idx];
        uint64_t index = tlb_index(f, va);
        if (f->table[index].addr_code == (cp & ~(uint64_t)3))
            keep_entry(s, idx, cp & ~(uint64_t)3, &f->table[index], iotlb_of(s, idx, index));
        else
            keep_touch(s, cp | 4);                 /* put back in the victim TLB, say */
        s->keep_code[idx] = cp;
    }
    if (idx != 1) {
        uint64_t tss = ((uint32_t)s->segs[7].base & 0xFFFFF000u) | idx;
        if (tss != s->fastw_done[3] && fast_write_page(s, idx, tss & ~(uint64_t)3))
            s->fastw_done[3] = tss;
        return;
    }
    if (!s->fastw_esp0) {
        /* Where TSS.ESP0 lives in RAM, found once per CR3 (stale at worst: then another
         * page is tried, and fast_write_page decides alone what may be let through). */
        uint64_t pa = phys_of(s, (uint32_t)s->segs[7].base + 4);
        s->fastw_esp0 = (pa == NO_PA || pa + 4 > s->ram_size || (pa & 0xFFF) > 0xFFC)
            ? (const uint8_t *)&no_esp0 : s->ram + pa;
    }
    uint32_t esp0;
    memcpy(&esp0, s->fastw_esp0, 4);
    unsigned kidx = (*s->hflags & HF_SMAP) ? 0 : 2;
    uint64_t k = ((uint64_t)((esp0 - 4) & 0xFFFFF000u)) | kidx;
    if (esp0 && k != s->fastw_done[kidx] && fast_write_page(s, kidx, k & ~(uint64_t)3))
        s->fastw_done[kidx] = k;
}

/* Unicorn's MMU index for the CPU's current accesses (target/i386/cpu.h cpu_mmu_index):
 * 1 in ring 3, else 2, or 0 with SMAP on and EFLAGS.AC clear. */
static inline unsigned mmu_index(const struct bh_state *s)
{
    uint32_t hf = *s->hflags;
    return (hf & 3) == 3 ? 1 : (!(hf & HF_SMAP) || (*s->eflags & EFLAGS_AC)) ? 2 : 0;
}

/* Unicorn's TLB entry that code at `va` is fetched through in MMU index `idx`: the one in its
 * slot, or when another page of the same slot took that (a direct-mapped TLB of 64 entries
 * sees such collisions often: the kernel's code and a TCB page, say), the one in the victim
 * TLB, looked for first in slot `hint` (0-7).  NULL when neither holds it. */
static inline const struct tlb_entry *code_entry(const struct bh_state *s, uint64_t va,
                                                 unsigned idx, unsigned hint)
{
    const struct tlb_fast *f = &s->tlb[idx];
    const struct tlb_entry *e = &f->table[tlb_index(f, va)];
    const struct tlb_entry *vt = s->tlbd[idx].vtable;
    uint64_t page = va & ~(uint64_t)0xFFF;
    if (e->addr_code == page)
        return e;
    if (vt[hint].addr_code == page)
        return &vt[hint];
    for (const struct tlb_entry *v = vt; v < vt + 8; v++)
        if (v->addr_code == page)
            return v;
    return NULL;
}

/* The physical address of code at `va`: what Unicorn's TLB says (the translation the block
 * was fetched through, as it holds that entry while the block runs), or a walk of the page
 * tables when the entry is gone (evicted, or flushed under a block chained to this one). */
static inline uint64_t code_phys(const struct bh_state *s, uint64_t va, unsigned idx)
{
    if (!(s->cr3[1] & CR4_PAE)) {
        const struct tlb_entry *e = code_entry(s, va, idx, 0);
        if (e) {
            uint64_t off = host_off(s, e, va);
            if (off < s->ram_size)
                return off;
        }
    }
    return phys_of(s, (uint32_t)va);
}

/* The first breakpoint in [va, va + size), other than `skip` at va; NO_VA if none. */
static uint64_t breakpoint_in(const struct bh_state *s, uint64_t va, uint32_t size,
                              uint64_t skip)
{
    uint32_t lo = 0, hi = s->n_bps;
    while (lo < hi) {                         /* the first address >= va */
        uint32_t mid = (lo + hi) / 2;
        if (s->bps[mid] < va)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < s->n_bps && s->bps[lo] == va && va == skip)
        lo++;
    return lo < s->n_bps && s->bps[lo] < va + size ? s->bps[lo] : NO_VA;
}

static void miss(void *uc, struct bh_state *s, uint64_t va, uint64_t pa, uint32_t f1,
                 uint32_t size)
{
    s->miss_va = va;
    s->miss_pa = pa;
    s->miss_f1 = f1;
    s->miss_size = size;
    stop(uc, s, STOP_MISS);
}

/* Everything but "the same block again": the budget stop, the interrupt window, a lookup
 * of the block's count, a miss, the limit.  Out of line so the common path stays short. */
static __attribute__((noinline)) void block_slow(void *uc, uint64_t va, uint32_t size,
                                                  struct bh_state *s)
{
    if (s->total >= s->budget ||
        (s->irq_waiting && (*s->eflags & EFLAGS_IF) && !(*s->hflags & HF_INHIBIT_IRQ))) {
        /* Out of budget, or sti/iret/popf just opened the door to a waiting interrupt. */
        stop(uc, s, STOP_BUDGET);
        return;
    }
    uint32_t icount, flags = 0;
    int repeat = 1;
    unsigned idx = mmu_index(s);
    if (unlikely(s->once_icount) && va == s->once_va && size == s->once_size) {
        icount = s->once_icount;
        s->once_icount = 0;
        goto count;
    }
    struct va_entry *v = s->vcache && !s->vc_off ? va_slot(s, va) : NULL;
    if (v && v->epoch == s->vc_epoch && v->va == (uint32_t)va && v->size == size) {
        const struct tlb_entry *vt = s->tlbd[idx].vtable;
        const struct tlb_entry *e = code_entry(s, va, idx, v->pa & 7);
        if (e && e >= vt && e < vt + 8)            /* in the victim TLB: look there first */
            v->pa = (v->pa & ~7u) | (uint32_t)(e - vt);
        if (e && (host_off(s, e, va) & ~(uint64_t)0xFFF) == (v->pa & ~0xFFFu)) {
            icount = v->icount & ~VA_WRITES_CR3;
            flags = (v->icount & VA_WRITES_CR3) ? BLOCK_WRITES_CR3 : 0;
            s->last_f0 = s->last_f1 = v->pa >> 12;
            s->vc_hits++;
            goto count;
        }
    }
    uint64_t pa = code_phys(s, va, idx);
    uint32_t f1 = (uint32_t)(pa >> 12);
    if (pa == NO_PA) {
        miss(uc, s, va, pa, 0, size);    /* not in RAM: Python counts it every time */
        return;
    }
    if (((pa & 0xFFF) + size) > 0x1000) {
        uint64_t pa1 = code_phys(s, (uint32_t)(va + size - 1), idx);
        if (pa1 == NO_PA) {
            miss(uc, s, va, NO_PA, 0, size);
            return;
        }
        f1 = (uint32_t)(pa1 >> 12);
    }
    uint64_t i = slot_of(s, pa, size);
    for (;;) {
        struct bh_entry *e = &s->table[i];
        if (e->size == size && e->pa == pa && e->f1 == f1) {
            if (unlikely(!entry_valid(s, e))) {
                s->relearned++;
                miss(uc, s, va, pa, f1, size);
                return;
            }
            icount = e->icount;
            flags = e->flags;
            s->last_f0 = (uint32_t)(pa >> 12);
            s->last_f1 = f1;
            if (v && f1 == s->last_f0 && pa <= UINT32_MAX && size <= UINT16_MAX &&
                icount < VA_WRITES_CR3 && !(s->wstate[f1] & WS_VOLATILE))
                *v = (struct va_entry){
                    .va = (uint32_t)va, .pa = (uint32_t)pa & ~0xFFFu, .epoch = s->vc_epoch,
                    .size = (uint16_t)size,
                    .icount = (uint16_t)(icount | (flags & BLOCK_WRITES_CR3 ? VA_WRITES_CR3 : 0)),
                };
            break;
        }
        if (e->size == 0) {
            miss(uc, s, va, pa, f1, size);
            return;
        }
        i = (i + 1) & s->mask;
    }
count:
    if (unlikely(s->n_bps) && !s->bp_off) {
        uint64_t skip = s->bp_skip;
        s->bp_skip = NO_VA;
        uint64_t at = breakpoint_in(s, va, size, skip);
        if (at != NO_VA) {
            s->bp_at = at;
            s->cut_icount = icount;
            stop(uc, s, STOP_BREAK);
            return;
        }
        if (skip == va)
            repeat = 0;                        /* it holds a breakpoint: never run it again
                                                  without looking */
    }
    if (s->total + icount > s->limit) {
        s->cut_icount = icount;
        stop(uc, s, STOP_LIMIT);
        return;
    }
    s->total += icount;
    s->last_va = repeat ? va : NO_VA;
    s->last_size = size;
    s->last_icount = icount;
    if (s->fastw) {
        fast_writes(s, idx, va);
        if ((flags & BLOCK_WRITES_CR3) && keeping(s))
            keep_epoch_pages(s);
    }
    uint64_t b = s->budget ? s->budget - 1 + icount : 0;
    s->fast_bound = s->irq_waiting ? 0 : (b < s->limit ? b : s->limit);
}

void l4emu_block_cb(void *uc, uint64_t va, uint32_t size, void *user)
{
    struct bh_state *s = (struct bh_state *)user;
    /* The block that ran last again (a loop: the common case), inside the budget and the
     * limit, no interrupt waiting.  Its address is all that need be compared: a CR3 write
     * ends its block, so between two runs of one address in different address spaces
     * another block always runs; a block whose bytes another block rewrote is entered from
     * that other block (a block rewriting its own bytes is counted twice anyway: see
     * docs/architecture.md); and the host forgets `last` (last_va = NO_VA) whenever it drops
     * translations, changes CR3 or restores a snapshot, so a block retranslated with another
     * size at the same address is never taken for the last one. */
    uint64_t t = s->total + s->last_icount;
    (void)size;
    if (va == s->last_va && t <= s->fast_bound) {
        s->total = t;
        return;
    }
    block_slow(uc, va, size, s);
}

/* The cheapest possible block callback, for benchmarks only: it shows the floor that any
 * per-block hook pays in Unicorn (guest registers spilled around the call). */
void l4emu_block_empty_cb(void *uc, uint64_t va, uint32_t size, void *user)
{
    (void)uc;
    (void)va;
    ((struct bh_state *)user)->total += size;
}

/* Installed over all code only while watchpoints exist: stop before the instruction after
 * the one whose memory access hit a watchpoint (a code hook runs before its instruction). */
void l4emu_code_cb(void *uc, uint64_t va, uint32_t size, void *user)
{
    struct bh_state *s = (struct bh_state *)user;
    (void)va;
    (void)size;
    if (s->watch_hit) {
        s->stopped = STOP_WATCH;
        s->emu_stop(uc);
    }
}

static void insert_raw(struct bh_state *s, const struct bh_entry *n)
{
    uint64_t i = slot_of(s, n->pa, n->size);
    for (;;) {
        struct bh_entry *e = &s->table[i];
        if (e->size == 0) {
            *e = *n;
            s->used++;
            return;
        }
        if (e->size == n->size && e->pa == n->pa && e->f1 == n->f1) {
            *e = *n;
            return;
        }
        i = (i + 1) & s->mask;
    }
}

/* Empty the table and give it 2^log2 slots.  Returns 0, or -1 when out of memory. */
int l4emu_block_reset(struct bh_state *s, unsigned log2)
{
    struct bh_entry *t = calloc((size_t)1 << log2, sizeof(*t));
    if (!t)
        return -1;
    free(s->table);
    s->table = t;
    s->last_size = 0;
    s->last_va = NO_VA;
    s->mask = ((uint64_t)1 << log2) - 1;
    s->used = 0;
    va_invalidate(s);
    return 0;
}

/* ---- write protection of frames that hold counted code --------------------------------- */

#define MAX_REGIONS 256              /* machines alive at once in one process */
static struct bh_state *volatile regions[MAX_REGIONS];
static struct sigaction previous;
static int installed;

static void on_segv(int sig, siginfo_t *si, void *ctx);

static void chain(int sig, siginfo_t *si, void *ctx)
{
    if (previous.sa_flags & SA_SIGINFO) {
        if (previous.sa_sigaction) {
            previous.sa_sigaction(sig, si, ctx);
            return;
        }
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
        return;
    }
    /* Nobody else handles it: the default action, when the access is retried. */
    signal(sig, SIG_DFL);
}

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    uintptr_t a = (uintptr_t)si->si_addr;
    for (int r = 0; r < MAX_REGIONS; r++) {
        struct bh_state *s = regions[r];
        if (!s || a - (uintptr_t)s->ram >= s->ram_size)
            continue;
        uint64_t f = (a - (uintptr_t)s->ram) >> 12;
        uint8_t w = s->wstate[f];
        if (!(w & WS_PROTECTED))
            break;
        mprotect(s->ram + (f << 12), 0x1000, PROT_READ | PROT_WRITE);
        w &= (uint8_t)~WS_PROTECTED;
        if (w < 0xF0)
            w = (uint8_t)(w + WS_COUNT_ONE);
        /* Written again and again, or written by the code running in it: stop protecting
         * it (protection would only bounce between a fault and a relearn). */
        if ((w >> WS_COUNT_SHIFT) >= WS_VOLATILE_AFTER || f == s->last_f0 || f == s->last_f1)
            w |= WS_VOLATILE;
        s->wstate[f] = w;
        s->gen[f]++;
        s->write_faults++;
        va_invalidate(s);
        return;
    }
    chain(sig, si, ctx);
}

/* Make sure this file's SIGSEGV handler is the process's (others may have replaced it since:
 * faulthandler, a debugger): the one found is chained to.  Returns 0, or -1. */
int l4emu_wp_ensure(void)
{
    struct sigaction cur;
    if (sigaction(SIGSEGV, NULL, &cur))
        return -1;
    if (installed && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_segv)
        return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &previous))
        return -1;
    installed = 1;
    return 0;
}

/* Watch the writes to `ram` (page-aligned, `size` bytes) for this block state.  Returns 0;
 * -1: no memory, host pages that are not 4 KiB, or no SIGSEGV handler; -2: MAX_REGIONS
 * machines are alive already. */
int l4emu_wp_attach(struct bh_state *s, uint8_t *ram, uint64_t size)
{
    if (sysconf(_SC_PAGESIZE) != 0x1000 || ((uintptr_t)ram & 0xFFF))
        return -1;
    uint64_t frames = (size + 0xFFF) >> 12;
    s->gen = calloc(frames, sizeof(*s->gen));
    s->wstate = calloc(frames, 1);
    if (!s->gen || !s->wstate)
        return -1;
    s->keep = calloc(1, sizeof(*s->keep));
    s->vcache = calloc((size_t)1 << VA_CACHE_BITS, sizeof(*s->vcache));
    if (!s->keep || !s->vcache)
        return -1;
    va_invalidate(s);
    s->ram = ram;
    s->ram_size = size;
    s->a20_mask = ~(uint64_t)0;
    s->last_f0 = s->last_f1 = ~(uint32_t)0;
    for (int r = 0; r < MAX_REGIONS; r++) {
        if (!regions[r]) {
            regions[r] = s;
            return l4emu_wp_ensure();
        }
    }
    return -2;
}

/* Protect the frames of a block just learned (unless volatile or already protected). */
static void protect(struct bh_state *s, uint32_t f)
{
    uint8_t w = s->wstate[f];
    if (w & (WS_PROTECTED | WS_VOLATILE))
        return;
    if (mprotect(s->ram + ((uint64_t)f << 12), 0x1000, PROT_READ) == 0)
        s->wstate[f] = (uint8_t)(w | WS_PROTECTED);
}

/* Record a block's instruction count under its physical address `pa` (frame of its last byte
 * `f1`); the table doubles when it is half full.  Returns 0, or -1 when out of memory. */
int l4emu_block_insert(struct bh_state *s, uint64_t pa, uint32_t f1, uint32_t size,
                       uint32_t icount)
{
    if ((s->used + 1) * 2 > s->mask + 1) {
        struct bh_entry *old = s->table;
        uint64_t n = s->mask + 1;
        struct bh_entry *t = calloc((size_t)n * 2, sizeof(*t));
        if (!t)
            return -1;
        s->table = t;
        s->mask = n * 2 - 1;
        s->used = 0;
        for (uint64_t j = 0; j < n; j++)
            if (old[j].size)
                insert_raw(s, &old[j]);
        free(old);
    }
    uint32_t f0 = (uint32_t)(pa >> 12);
    if ((s->wstate[f0] | s->wstate[f1]) & WS_FASTW)
        s->fastw_flush = 1;
    s->wstate[f0] |= WS_CODE;
    s->wstate[f1] |= WS_CODE;
    protect(s, f0);
    protect(s, f1);
    va_invalidate(s);
    struct bh_entry e = {
        .pa = pa, .hash = bytes_hash(s, pa, f1, size), .size = size, .icount = icount,
        .f1 = f1, .gen0 = s->gen[f0], .gen1 = s->gen[f1],
        .flags = ends_with_cr3_write(s, pa, f1, size) ? BLOCK_WRITES_CR3 : 0,
    };
    insert_raw(s, &e);
    return 0;
}

/* Forget what the frames held (the host dropped every translation and count: the host wrote
 * guest memory): every frame writable, neither code nor volatile any more.  WS_FASTW stays:
 * an entry let through before may still be in the TLB.  A write by the host must not count
 * as the running code writing its own frame. */
void l4emu_wp_forget(struct bh_state *s)
{
    if (!s->ram || !s->wstate)
        return;
    for (uint64_t f = 0; f < (s->ram_size + 0xFFF) >> 12; f++) {
        uint8_t w = s->wstate[f];
        if (!w)
            continue;
        if (w & WS_PROTECTED)
            mprotect(s->ram + (f << 12), 0x1000, PROT_READ | PROT_WRITE);
        s->wstate[f] = (uint8_t)(w & WS_FASTW);
    }
    s->last_f0 = s->last_f1 = ~(uint32_t)0;
    va_invalidate(s);
}

/* Forget the table and stop watching RAM (every frame writable again). */
void l4emu_block_free(struct bh_state *s)
{
    for (int r = 0; r < MAX_REGIONS; r++)
        if (regions[r] == s)
            regions[r] = NULL;
    if (s->ram && s->wstate) {
        for (uint64_t f = 0; f < (s->ram_size + 0xFFF) >> 12; f++)
            if (s->wstate[f] & WS_PROTECTED)
                mprotect(s->ram + (f << 12), 0x1000, PROT_READ | PROT_WRITE);
    }
    free(s->gen);
    free(s->wstate);
    free(s->keep);
    free(s->vcache);
    s->gen = NULL;
    s->wstate = NULL;
    s->keep = NULL;
    s->vcache = NULL;
    s->ram = NULL;
    free(s->table);
    s->table = NULL;
    s->mask = 0;
    s->used = 0;
}

size_t l4emu_block_state_size(void)
{
    return sizeof(struct bh_state);
}

/* ---------------------------------------------------------------------------------------
 * Software-interrupt delivery, the common case in C (DESIGN D3; emu/cpu.py owns the rules).
 *
 * Unicorn never reads the guest IDT: every exception and `int n` reaches the UC_HOOK_INTR
 * callback.  `int n` is how guests make system calls, so its cost matters: this callback
 * delivers it through a 32-bit interrupt or trap gate to a non-conforming ring-0 code segment,
 * with the TSS stack switch from ring 3, exactly as emu/cpu.py's `Cpu._deliver_once` does,
 * and hands everything else to Python (`slow`): exceptions, any check that fails (Python then
 * raises the right fault), any page walk that would fault, a pending host condition.  It
 * changes nothing before it knows it can finish, so handing over is always safe.
 */
struct dv_rec {
    uint64_t seq;
    uint32_t vector, eip, cpl, pad;
};

#define DV_RING 16

typedef int (*uc_reg_fn)(void *uc, int regid, void *value);
typedef void (*intr_fn)(void *uc, uint32_t intno, void *user);

struct dv_state {
    uc_reg_fn reg_read;
    uc_reg_fn reg_write;
    intr_fn slow;            /* the Python path (Cpu._on_intr) */
    uint8_t *ram;
    uint64_t ram_size;
    uint64_t *regs;          /* env->regs[8] */
    uint64_t *eip;
    uint64_t *eflags;
    uint32_t *hflags;
    int32_t *old_exception;
    int32_t *is_int;
    uint64_t *cr;            /* env->cr[0..4] */
    struct seg_cache *segs;  /* env->segs[0..9]: ES CS SS DS FS GS LDT TR GDT IDT */
    uint32_t enabled;        /* 0: always Python (e.g. while an observer wants every trap) */
    int32_t reg_eflags, reg_ss, reg_cs;
    uint32_t pad;
    uint64_t seq;            /* trap sequence number, shared with Python's records */
    uint64_t fast;           /* deliveries done here */
    uint32_t ring_pos;
    uint32_t pad2;
    struct dv_rec ring[DV_RING];
};

#define PG 0x80000000u
#define WP 0x00010000u
#define PSE 0x10u

static inline uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* Linear -> physical for a supervisor access that must not fault (else -1).  Sets the
 * accessed (and for writes dirty) bits as the MMU would, as emu/cpu.py's walk does. */
static int sys_walk(struct dv_state *s, uint32_t va, int write, uint32_t *pa)
{
    uint64_t cr0 = s->cr[0];
    if (!(cr0 & PG)) {
        *pa = va;
        return 0;
    }
    uint64_t pde_addr = (s->cr[3] & 0xFFFFF000u) | ((va >> 20) & 0xFFC);
    uint32_t pde = pt_entry(s->ram, s->ram_size, pde_addr);
    if (!pde)
        return -1;
    if ((pde & 0x80) && (s->cr[4] & PSE)) {
        if (write && !(pde & 2) && (cr0 & WP))
            return -1;
        uint32_t want = pde | 0x20 | (write ? 0x40 : 0);
        if (want != pde)
            wr32(s->ram + pde_addr, want);
        *pa = (pde & 0xFFC00000u) | (va & 0x3FFFFF);
        return 0;
    }
    uint64_t pte_addr = (pde & 0xFFFFF000u) | ((va >> 10) & 0xFFC);
    uint32_t pte = pt_entry(s->ram, s->ram_size, pte_addr);
    if (!pte)
        return -1;
    if (write && !(pde & pte & 2) && (cr0 & WP))
        return -1;
    if (!(pde & 0x20))
        wr32(s->ram + pde_addr, pde | 0x20);
    uint32_t want = pte | 0x20 | (write ? 0x40 : 0);
    if (want != pte)
        wr32(s->ram + pte_addr, want);
    *pa = (pte & 0xFFFFF000u) | (va & 0xFFF);
    return 0;
}

static int sys_read8(struct dv_state *s, uint32_t va, uint32_t *lo, uint32_t *hi)
{
    uint32_t pa0, pa1;
    if (sys_walk(s, va, 0, &pa0) || sys_walk(s, va + 4, 0, &pa1))
        return -1;
    if ((uint64_t)pa0 + 4 > s->ram_size || (uint64_t)pa1 + 4 > s->ram_size)
        return -1;
    *lo = rd32(s->ram + pa0);
    *hi = rd32(s->ram + pa1);
    return 0;
}

static int descriptor(struct dv_state *s, uint32_t sel, uint32_t *lo, uint32_t *hi)
{
    struct seg_cache *gdt = &s->segs[8];
    if (sel & 4)
        return -1;
    if ((sel & ~7u) + 7 > gdt->limit)
        return -1;
    return sys_read8(s, (uint32_t)gdt->base + (sel & ~7u), lo, hi);
}

void l4emu_intr_cb(void *uc, uint32_t intno, void *user)
{
    struct dv_state *s = (struct dv_state *)user;
    if (!s->enabled || !*s->is_int || intno > 255)
        goto slow;
    uint32_t cpl = *s->hflags & 3;
    struct seg_cache *idt = &s->segs[9];
    if (intno * 8 + 7 > idt->limit)
        goto slow;
    uint32_t lo, hi, dlo, dhi;
    if (sys_read8(s, (uint32_t)idt->base + intno * 8, &lo, &hi))
        goto slow;
    uint32_t gtype = (hi >> 8) & 0x1F;
    if ((gtype != 0xE && gtype != 0xF) || ((hi >> 13) & 3) < cpl || !(hi & 0x8000))
        goto slow;
    uint32_t sel = (lo >> 16) & 0xFFFF, offset = (hi & 0xFFFF0000u) | (lo & 0xFFFF);
    if (!(sel & ~3u) || descriptor(s, sel, &dlo, &dhi))
        goto slow;
    uint32_t access = (dhi >> 8) & 0xFF;
    /* a present, non-conforming code segment of DPL 0 */
    if ((access & 0x18) != 0x18 || (access & 0x04) || ((access >> 5) & 3) != 0 ||
        !(access & 0x80))
        goto slow;
    uint32_t eip = (uint32_t)*s->eip, esp = (uint32_t)s->regs[4];
    uint32_t frame[5], n;
    uint32_t new_esp, new_ss = 0;
    uint32_t eflags;
    if (s->reg_read(uc, s->reg_eflags, &eflags))
        goto slow;
    if (cpl > 0) {
        struct seg_cache *tr = &s->segs[7];
        uint32_t slo, shi;
        if (tr->limit < 4 + 7 || sys_read8(s, (uint32_t)tr->base + 4, &new_esp, &new_ss))
            goto slow;
        new_ss &= 0xFFFF;
        if (!(new_ss & ~3u) || (new_ss & 3) || descriptor(s, new_ss, &slo, &shi))
            goto slow;
        uint32_t sacc = (shi >> 8) & 0xFF;
        if (((sacc >> 5) & 3) != 0 || (sacc & 0x1A) != 0x12 || !(sacc & 0x80))
            goto slow;
        /* pushed first to last: SS, ESP, EFLAGS, CS, EIP */
        frame[0] = s->segs[2].selector; frame[1] = esp; frame[2] = eflags;
        frame[3] = s->segs[1].selector; frame[4] = eip;
        n = 5;
    } else {
        new_esp = esp;
        frame[0] = eflags; frame[1] = s->segs[1].selector; frame[2] = eip;
        n = 3;
    }
    uint32_t pas[5];
    uint32_t sp = new_esp;
    for (uint32_t i = 0; i < n; i++) {
        sp -= 4;
        if (sys_walk(s, sp, 1, &pas[i]) || (uint64_t)pas[i] + 4 > s->ram_size)
            goto slow;
    }
    for (uint32_t i = 0; i < n; i++)
        wr32(s->ram + pas[i], frame[i]);
    /* commit, as Cpu._deliver_once: CPL, stack, entry, flags; then SS and CS via the engine */
    *s->hflags = (*s->hflags & ~3u);
    *s->old_exception = -1;
    s->regs[4] = sp;
    *s->eip = offset;
    uint64_t clear = 0x100 | 0x4000 | 0x10000 | 0x20000 | (gtype == 0xE ? 0x200 : 0);
    *s->eflags &= ~clear;
    uint16_t v16;
    if (cpl > 0) {
        v16 = (uint16_t)new_ss;
        s->reg_write(uc, s->reg_ss, &v16);
    }
    v16 = (uint16_t)(sel & ~3u);
    s->reg_write(uc, s->reg_cs, &v16);
    struct dv_rec *r = &s->ring[s->ring_pos++ % DV_RING];
    r->seq = ++s->seq;
    r->vector = intno;
    r->eip = eip;
    r->cpl = cpl;
    s->fast++;
    return;
slow:
    s->slow(uc, intno, user);
}

size_t l4emu_dv_state_size(void)
{
    return sizeof(struct dv_state);
}

/* A Python module so that setuptools builds and installs the library; Python reaches the
 * functions above through ctypes (emu/cpu.py), never through this module object. */
static struct PyModuleDef blockhook_module = {
    PyModuleDef_HEAD_INIT, "_blockhook",
    "Native block callback of the l4emu run loop (used through ctypes).", -1, NULL,
};

PyMODINIT_FUNC PyInit__blockhook(void)
{
    return PyModule_Create(&blockhook_module);
}

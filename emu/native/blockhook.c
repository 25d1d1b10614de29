/*
 * blockhook.c - the run loop's native block callback (DESIGN D5).
 *
 * Unicorn calls l4emu_block_cb at the start of every translated block it is about to run,
 * with the block's virtual address and size in bytes.  The callback:
 *   - stops the run before the block when the instruction budget is spent (the host asks for
 *     a stop by zeroing the budget; uc_emu_stop from a block hook takes effect before the
 *     block executes);
 *   - otherwise adds the block's instruction count to the retired-instruction total.
 * Instruction counts per block come from a table keyed by (virtual address, size, CR3) that
 * Python fills: on a miss the callback stops the run, Python asks Unicorn for the block's
 * instruction count (uc_ctl_request_cache) and resumes.  CR3 is read from the live CPU state
 * so that equal virtual addresses in different address spaces do not share an entry.
 *
 * No Python runs here: this is what keeps deterministic budgets almost free.
 */
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int (*uc_stop_fn)(void *uc);

struct bh_entry {
    uint64_t va;
    uint64_t cr3;
    uint32_t size;   /* 0 marks an empty slot */
    uint32_t icount;
};

enum { STOP_NONE = 0, STOP_BUDGET = 1, STOP_MISS = 3, STOP_WATCH = 4, STOP_LIMIT = 5 };

/* Shared with Python through ctypes (emu/cpu.py mirrors this layout).  The fields the
 * callback touches on every block come first, in one cache line. */
struct bh_state {
    uint64_t total;        /* retired instructions, counted a whole block at a time */
    uint64_t budget;       /* stop before any block that starts at total >= budget; the host
                              sets it to 0 to stop at the next block */
    uint64_t last_va;      /* the last block counted: its key and count (last_size 0: none) */
    uint64_t last_cr3;
    uint32_t last_size;
    uint32_t last_icount;
    uint32_t irq_waiting;  /* an interrupt is pending but EFLAGS.IF was clear or a shadow on */
    uint32_t stopped;      /* why the callback stopped the run (STOP_*) */
    const uint64_t *cr3;   /* &env->cr[3] of the live CPU */
    const uint64_t *eflags;  /* &env->eflags (IF lives there) */
    const uint32_t *hflags;  /* &env->hflags (the interrupt shadow lives there) */
    uc_stop_fn emu_stop;
    uint64_t miss_va;      /* STOP_MISS: the block that has no entry yet */
    uint64_t miss_cr3;
    uint32_t miss_size;
    uint32_t watch_hit;    /* a watchpoint's memory hook fired during the last instruction */
    struct bh_entry *table;
    uint64_t mask;         /* table size - 1 (a power of two) */
    uint64_t used;
    uint64_t limit;        /* never run a block that would end past this count: the run stops
                              before it (STOP_LIMIT) and the host finishes it exactly */
    uint32_t cut_icount;   /* STOP_LIMIT: the instruction count of the block not started */
    uint32_t pad3;
};

#define EFLAGS_IF 0x200
#define HF_INHIBIT_IRQ 0x8

static inline uint64_t slot_of(const struct bh_state *s, uint64_t va, uint64_t cr3, uint32_t size)
{
    uint64_t h = va * 0x9E3779B97F4A7C15ull ^ (cr3 >> 12) * 0xC2B2AE3D27D4EB4Full ^ size;
    return (h ^ (h >> 29)) & s->mask;
}

void l4emu_block_cb(void *uc, uint64_t va, uint32_t size, void *user)
{
    struct bh_state *s = (struct bh_state *)user;
    if (s->total >= s->budget ||
        (s->irq_waiting && (*s->eflags & EFLAGS_IF) && !(*s->hflags & HF_INHIBIT_IRQ))) {
        /* Out of budget, or sti/iret/popf just opened the door to a waiting interrupt. */
        s->stopped = STOP_BUDGET;
        s->emu_stop(uc);
        return;
    }
    uint64_t cr3 = *s->cr3;
    if (va == s->last_va && size == s->last_size && cr3 == s->last_cr3) {
        /* The block that ran last again: a loop, the common case. */
        if (s->total + s->last_icount > s->limit) {
            s->cut_icount = s->last_icount;
            goto limit;
        }
        s->total += s->last_icount;
        return;
    }
    uint64_t i = slot_of(s, va, cr3, size);
    for (;;) {
        struct bh_entry *e = &s->table[i];
        if (e->size == size && e->va == va && e->cr3 == cr3) {
            if (s->total + e->icount > s->limit) {
                s->cut_icount = e->icount;
                goto limit;
            }
            s->total += e->icount;
            s->last_va = va;
            s->last_cr3 = cr3;
            s->last_size = size;
            s->last_icount = e->icount;
            return;
        }
        if (e->size == 0)
            break;
        i = (i + 1) & s->mask;
    }
    s->stopped = STOP_MISS;
    s->miss_va = va;
    s->miss_cr3 = cr3;
    s->miss_size = size;
    s->emu_stop(uc);
    return;
limit:
    s->stopped = STOP_LIMIT;
    s->emu_stop(uc);
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

static int insert_raw(struct bh_state *s, uint64_t va, uint64_t cr3, uint32_t size, uint32_t icount)
{
    uint64_t i = slot_of(s, va, cr3, size);
    for (;;) {
        struct bh_entry *e = &s->table[i];
        if (e->size == 0) {
            e->va = va;
            e->cr3 = cr3;
            e->size = size;
            e->icount = icount;
            s->used++;
            return 0;
        }
        if (e->size == size && e->va == va && e->cr3 == cr3) {
            e->icount = icount;
            return 0;
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
    s->mask = ((uint64_t)1 << log2) - 1;
    s->used = 0;
    return 0;
}

/* Add a block's instruction count; the table doubles when it is half full. */
int l4emu_block_insert(struct bh_state *s, uint64_t va, uint64_t cr3, uint32_t size, uint32_t icount)
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
                insert_raw(s, old[j].va, old[j].cr3, old[j].size, old[j].icount);
        free(old);
    }
    return insert_raw(s, va, cr3, size, icount);
}

void l4emu_block_free(struct bh_state *s)
{
    free(s->table);
    s->table = NULL;
    s->mask = 0;
    s->used = 0;
}

size_t l4emu_block_state_size(void)
{
    return sizeof(struct bh_state);
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

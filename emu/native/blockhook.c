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
    uint32_t cut_icount;   /* STOP_LIMIT: the instruction count of the block not started */
    uint32_t pad3;
};

#define EFLAGS_IF 0x200
#define HF_INHIBIT_IRQ 0x8
#define unlikely(x) __builtin_expect(!!(x), 0)

static inline uint64_t slot_of(const struct bh_state *s, uint64_t va, uint64_t cr3, uint32_t size)
{
    uint64_t h = va * 0x9E3779B97F4A7C15ull ^ (cr3 >> 12) * 0xC2B2AE3D27D4EB4Full ^ size;
    return (h ^ (h >> 29)) & s->mask;
}

static void stop(void *uc, struct bh_state *s, uint32_t why)
{
    s->stopped = why;
    s->emu_stop(uc);
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
    uint32_t icount;
    if (va == s->last_va && size == s->last_size) {
        icount = s->last_icount;
    } else {
        uint64_t cr3 = *s->cr3;
        uint64_t i = slot_of(s, va, cr3, size);
        for (;;) {
            struct bh_entry *e = &s->table[i];
            if (e->size == size && e->va == va && e->cr3 == cr3) {
                icount = e->icount;
                break;
            }
            if (e->size == 0) {
                s->miss_va = va;
                s->miss_cr3 = cr3;
                s->miss_size = size;
                stop(uc, s, STOP_MISS);
                return;
            }
            i = (i + 1) & s->mask;
        }
    }
    if (s->total + icount > s->limit) {
        s->cut_icount = icount;
        stop(uc, s, STOP_LIMIT);
        return;
    }
    s->total += icount;
    s->last_va = va;
    s->last_size = size;
    s->last_icount = icount;
    uint64_t b = s->budget ? s->budget - 1 + icount : 0;
    s->fast_bound = s->irq_waiting ? 0 : (b < s->limit ? b : s->limit);
}

void l4emu_block_cb(void *uc, uint64_t va, uint32_t size, void *user)
{
    struct bh_state *s = (struct bh_state *)user;
    /* The block that ran last again (a loop: the common case), inside the budget and the
     * limit, no interrupt waiting.  CR3 need not be compared: a CR3 write ends its block, so
     * between two runs of one block in different address spaces another block always runs;
     * and the host forgets `last` whenever it changes CR3 or restores a snapshot. */
    uint64_t t = s->total + s->last_icount;
    if (va == s->last_va && size == s->last_size && t <= s->fast_bound) {
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
struct seg_cache {
    uint32_t selector;
    uint32_t pad;
    uint64_t base;
    uint32_t limit;
    uint32_t flags;
};

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
    if (pde_addr + 4 > s->ram_size)
        return -1;
    uint32_t pde = rd32(s->ram + pde_addr);
    if (!(pde & 1))
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
    if (pte_addr + 4 > s->ram_size)
        return -1;
    uint32_t pte = rd32(s->ram + pte_addr);
    if (!(pte & 1))
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

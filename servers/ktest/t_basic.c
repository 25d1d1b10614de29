/* servers/ktest/t_basic.c: the kernel info page, the kdebug console interface, id_nearest. */
#include "ktest.h"

/* Call an entry stub in the KIP (the V2 kip_sys_calls convention) for id_nearest(nil). */
static l4_umword_t kip_stub_myself(l4_umword_t stub, l4_umword_t *high)
{
    l4_umword_t lo, hi;
    __asm__ __volatile__("pushl %%ebp\n\t"
                         "call *%%eax\n\t"
                         "popl %%ebp"
                         : "=S"(lo), "=D"(hi), "+a"(stub)
                         : "S"(0), "D"(0)
                         : "ebx", "ecx", "edx", "memory");
    *high = hi;
    return lo;
}

int test_kip(void)
{
    CHECK(l4_kip_word(L4_KIP_MAGIC) == L4_KIP_MAGIC_VALUE, "magic %#x", l4_kip_word(0));
    volatile uint8_t *kip = l4_kip();
    CHECK(kip[0] == 'L' && kip[1] == '4' && kip[2] == 0xE6 && kip[3] == 'K', "magic bytes");
    CHECK(l4_kip_word(L4_KIP_VERSION) == L4_KIP_VERSION_VALUE, "version %#x",
          l4_kip_word(L4_KIP_VERSION));
    CHECK(l4_kernel_interface() == L4_KIP_ADDR, "lock;nop gave %#x", l4_kernel_interface());
    unsigned methods = l4_kip_word(L4_KIP_ENTRY_METHODS);
    CHECK(methods == (L4_KIP_ENTRY_INT | L4_KIP_ENTRY_GATE), "entry methods %#x", methods);
    CHECK(l4_kip_word(L4_KIP_GATE_BASE) == L4_GATE_IPC, "gate base");
    uint32_t mem_hi = l4_kip_word(L4_KIP_MAIN_MEMORY + 4);
    uint32_t k_lo = l4_kip_word(L4_KIP_RESERVED0), k_hi = l4_kip_word(L4_KIP_RESERVED0 + 4);
    uint32_t p_lo = l4_kip_word(L4_KIP_RESERVED1), p_hi = l4_kip_word(L4_KIP_RESERVED1 + 4);
    uint32_t m_lo = l4_kip_word(L4_KIP_SEMI_RESERVED), m_hi = l4_kip_word(L4_KIP_SEMI_RESERVED + 4);
    CHECK(mem_hi == 64u << 20, "main memory ends at %#x", mem_hi);
    CHECK(k_lo == 0x100000 && k_hi > k_lo && k_hi <= m_lo, "kernel %#x-%#x", k_lo, k_hi);
    CHECK(m_lo < m_hi && m_hi <= p_lo && p_lo < p_hi && p_hi < mem_hi,
          "modules %#x-%#x pool %#x-%#x", m_lo, m_hi, p_lo, p_hi);
    CHECK(l4_kip_word(L4_KIP_NMODULES) == 3, "modules %u", l4_kip_word(L4_KIP_NMODULES));
    CHECK(l4_kip_word(L4_KIP_ROOT_EIP) != 0 && l4_kip_word(L4_KIP_SIGMA0_EIP) != 0, "eips");
    CHECK(l4_kip_word(L4_KIP_TICK_US) == L4_TICK_US, "tick");
    /* the clock moves with the timer */
    uint64_t c0 = l4_kip_clock();
    sleep_ms(3);
    uint64_t c1 = l4_kip_clock();
    CHECK(c1 - c0 >= 2000 && c1 - c0 <= 4000, "clock advanced %u us in 3 ms",
          (unsigned)(c1 - c0));
    /* the KIP is read-only for users: the entry stubs are lcall gate, 0; ret */
    CHECK(kip[L4_KIP_SYS_CALLS] == 1, "kip_sys_calls");
    uint32_t off = l4_kip_word(L4_KIP_SYS_ID_NEAREST);
    CHECK(kip[off] == 0x9A && kip[off + 5] == L4_GATE_ID_NEAREST && kip[off + 7] == 0xC3,
          "id_nearest stub at %#x", off);
    l4_umword_t hi, lo = kip_stub_myself(L4_KIP_ADDR + off, &hi);
    CHECK(lo == root_id.low && hi == root_id.high, "the stub said %#x:%#x", lo, hi);
    return 0;
}

int test_kdebug_output(void)
{
    /* tests/kernel/test_ktest.py looks for exactly this line */
    outstring("KD:");
    outchar(' ');
    outhex32(0x1234ABCD);
    outchar(' ');
    outdec(-42);
    outchar(' ');
    outnstring("nstring-cut", 7);
    kd_display(" display");
    outchar('\n');
    enter_kdebug("ktest enters the debugger");
    return 0;
}

int test_id_nearest(void)
{
    l4_threadid_t me = l4_myself(), n;
    CHECK(l4_task_of(me) == L4_ROOT_TASK && l4_lthread_of(me) == 0, "myself %#x", me.low);
    CHECK(l4_id_nearest(L4_SIGMA0_ID, &n) == 0 && l4_same(n, L4_SIGMA0_ID),
          "nearest to sigma0: %#x", n.low);
    return 0;
}

/* Map the page holding physical address `phys` (a boot module, the MBI) from sigma0 at
 * `window` and return a pointer to phys there. */
static const volatile char *phys_page(l4_umword_t phys, l4_umword_t window)
{
    l4_umword_t w0, w1;
    l4_msgdope_t dope;
    if (l4_ipc_call(L4_SIGMA0_ID, L4_IPC_SHORT_MSG, phys & ~(PAGE - 1), 0,
                    l4_rcv_window(l4_fpage(window, L4_PAGESHIFT, 0, 0)), &w0, &w1,
                    RCV_MS(100), &dope) || !(dope & L4_IPC_DOPE_FPAGE_RECEIVED))
        return 0;
    return (const volatile char *)(window + (phys & (PAGE - 1)));
}

int test_boot_modules(void)
{
    /* modules after the first two are the root task's: the KIP lists them, sigma0 maps them
     * (semi-reserved memory: on request only) */
    uint32_t m3 = L4_KIP_MODULES + 2 * L4_KIP_MODULE_SIZE;
    uint32_t start = l4_kip_word(m3), end = l4_kip_word(m3 + 4), cmd = l4_kip_word(m3 + 8);
    CHECK(start >= l4_kip_word(L4_KIP_SEMI_RESERVED) &&
          end <= l4_kip_word(L4_KIP_SEMI_RESERVED + 4) && start < end,
          "module 3 at %#x-%#x", start, end);
    const volatile char *data = phys_page(start, 0x6E000000);
    CHECK(data != 0, "sigma0 did not map the module");
    const char want[] = "/* servers/ktest/ktest.h";
    for (unsigned i = 0; i < sizeof want - 1; i++)
        CHECK(data[i] == want[i], "module byte %u is %#x", i, data[i]);
    const volatile char *text = phys_page(cmd, 0x6E001000);
    CHECK(text != 0, "sigma0 did not map the command line (low memory)");
    CHECK(text[0] == 'k' && text[5] == '-' && text[10] == 0, "command line starts %c", text[0]);
    /* the multiboot information is there too */
    const volatile uint32_t *mbi = (const volatile uint32_t *)phys_page(
        l4_kip_word(L4_KIP_MBI), 0x6E002000);
    CHECK(mbi != 0 && mbi[5] == 3, "MBI mods_count %u", mbi ? mbi[5] : 0);
    l4_fpage_unmap(l4_fpage(0x6E000000, 14, 0, 0), L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES);
    return 0;
}

/* servers/ktest/t_long.c: long IPC (docs/abi.md "Long messages"): dwords beyond the
 * registers, strings across address spaces, page faults in the middle of the copy resolved by
 * the faulting space's pager (in the sender's and in the receiver's space, with the transfer
 * run by either side), message cut, page-fault timeouts, hostile buffers, a map message from
 * a buffer, and the cost of a long message.
 *
 * The receiving or sending partner is a task running the root task's code (ktest.h): its
 * buffers are the root task's pages, which the pager maps on demand - so the kernel's copy
 * faults in it the first time - and the root task can look at what arrived. */
#include "ktest.h"

typedef L4_MSGBUF(32, 4) msgbuf_t;

static msgbuf_t sbuf, rbuf, tbuf;
static char sdata[2 * PAGE] __attribute__((aligned(PAGE)));
static char rdata[2 * PAGE] __attribute__((aligned(PAGE)));

/* the partner task's orders and what it saw */
static void *volatile px_buf;               /* its message buffer (receive or send) */
static volatile l4_timeout_t px_timeout;
static volatile int px_mode;                /* PX_* */
static volatile int px_done, px_err;
static volatile l4_msgdope_t px_dope;
static volatile l4_umword_t px_w0, px_w1, px_src_low;
static volatile uint64_t px_when;           /* the TSC when its receive returned */
static volatile unsigned px_sleep_ms;       /* sleep this long before the operation */
enum { PX_WAIT_LONG, PX_WAIT_SHORT, PX_SEND_ROOT, PX_TOUCH_WAIT, PX_ECHO, PX_WAIT_RAW,
       PX_WAIT_MAP };

#define PX_TASK 40
#define FRESH(i) (FRESH_BASE + (i) * PAGE)

static void partner(void *arg)
{
    (void)arg;
    l4_threadid_t src = L4_NIL_ID;
    l4_msgdope_t d = 0;
    int err;
    if (px_sleep_ms)
        sleep_ms(px_sleep_ms);
    switch (px_mode) {
    case PX_TOUCH_WAIT:                     /* map the first fresh page, not the second */
        (void)*(volatile char *)FRESH(12);
        /* fall through */
    case PX_WAIT_LONG:
        err = l4_ipc_wait_long(&src, px_buf, px_timeout, &d);
        px_when = l4_rdtsc();
        px_w0 = l4_msg_words(px_buf)[0];
        px_w1 = l4_msg_words(px_buf)[1];
        break;
    case PX_WAIT_MAP:                       /* then read the two pages mapped to it */
        err = l4_ipc_wait_long(&src, px_buf, px_timeout, &d);
        if (d & L4_IPC_DOPE_FPAGE_RECEIVED) {
            px_w0 = *(volatile l4_umword_t *)0x20000000;
            px_w1 = *(volatile l4_umword_t *)0x20001000;
        }
        break;
    case PX_WAIT_SHORT: {
        l4_umword_t w0 = 0, w1 = 0;
        err = l4_ipc_wait(&src, L4_IPC_SHORT_MSG, &w0, &w1, px_timeout, &d);
        px_w0 = w0;
        px_w1 = w1;
        break;
    }
    case PX_WAIT_RAW: {                     /* a buffer the task itself must not touch */
        struct l4_regs r = {L4_IPC_NIL_DESCRIPTOR, px_timeout, 0, 0, 0, 0,
                            (l4_umword_t)(uintptr_t)px_buf | L4_IPC_OPEN_IPC};
        l4_syscall(&r, L4_SYS_IPC);
        d = r.eax;
        err = d & L4_IPC_ERROR_MASK;
        break;
    }
    case PX_SEND_ROOT:
        err = l4_ipc_send_long(root_id, px_buf, 0, px_timeout, &d);
        break;
    case PX_ECHO:                           /* the cost measurement: receive, answer */
        for (;;) {
            err = l4_ipc_wait_long(&src, px_buf, L4_IPC_NEVER, &d);
            px_when = l4_rdtsc();
            l4_ipc_send(src, L4_IPC_SHORT_MSG, 0, 0, L4_IPC_NEVER, 0);
        }
    default:
        err = -1;
    }
    px_src_low = src.low;
    px_err = err;
    px_dope = d;
    px_done = 1;
    l4_sleep_forever();
}

/* Start the partner task; for the receiving modes wait until it receives. */
static l4_threadid_t px_start(int mode, void *buf, l4_timeout_t timeout)
{
    px_mode = mode;
    px_buf = buf;
    px_timeout = timeout;
    px_done = 0;
    px_err = -1;
    px_dope = 0;
    l4_threadid_t t = spawn(PX_TASK, partner, 0);
    if (mode != PX_SEND_ROOT && !px_sleep_ms)
        wait_state(t, L4_TS_WAIT_RECEIVE, 100);
    return t;
}

static int px_finish(void)
{
    for (unsigned i = 0; i < 200 && !px_done; i++)
        sleep_ms(1);
    int done = px_done;
    kill(PX_TASK);
    px_sleep_ms = 0;
    return done;
}

static void fill(char *p, unsigned n, unsigned seed)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (char)(seed + i * 7 + (i >> 8));
}

static int same(const volatile char *a, const char *b, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

int test_long_dwords(void)
{
    /* 20 dwords from the root task to a task waiting with room for 32: dwords 2..19 are
     * copied into its buffer (whose page it has not touched: the copy faults in its space
     * and the kernel has it run the page fault to its pager), 0 and 1 come in registers */
    l4_msg_init(&rbuf, 32, 0);
    for (unsigned i = 0; i < 32; i++)
        rbuf.w[i] = 0xEEEE0000u + i;
    l4_msg_init(&sbuf, 32, 0);
    for (unsigned i = 0; i < 20; i++)
        sbuf.w[i] = 0x1000u * i + 7;
    sbuf.h.snd_dope = l4_msg_dope(20, 0);
    l4_threadid_t t = px_start(PX_WAIT_LONG, &rbuf, L4_IPC_NEVER);
    l4_msgdope_t d = 0;
    int err = l4_ipc_send_long(t, &sbuf, 0, L4_IPC_NEVER, &d);
    CHECK(err == 0, "send: %#x", d);
    CHECK(px_finish(), "the receiver did not finish");
    CHECK(px_err == 0 && px_dope == l4_msg_dope(20, 0), "receive: err %#x dope %#x", px_err,
          px_dope);
    CHECK(px_src_low == root_id.low, "source %#x", px_src_low);
    CHECK(px_w0 == 7 && px_w1 == 0x1007, "registers %#x %#x", px_w0, px_w1);
    for (unsigned i = 2; i < 20; i++)
        CHECK(rbuf.w[i] == 0x1000u * i + 7, "dword %u: %#x", i, rbuf.w[i]);
    CHECK(rbuf.w[20] == 0xEEEE0014u, "dword 20 was written: %#x", rbuf.w[20]);
    /* at most two dwords and no strings: a short message, even to a short receive */
    sbuf.h.snd_dope = l4_msg_dope(2, 0);
    t = px_start(PX_WAIT_SHORT, 0, L4_IPC_NEVER);
    err = l4_ipc_send_long(t, &sbuf, 0, L4_IPC_NEVER, &d);
    CHECK(err == 0 && d == 0, "two dwords: %#x", d);
    CHECK(px_finish() && px_err == 0 && px_dope == 0 && px_w0 == 7 && px_w1 == 0x1007,
          "short receive: err %#x dope %#x", px_err, px_dope);
    return 0;
}

int test_long_string_pagefault(void)
{
    /* A 4 KiB string into a receive buffer that starts in the middle of one fresh page and
     * ends in the next: the receiver has touched the first, so the copy faults half-way; its
     * pager maps the page (a write fault, as the kernel reports it) and the copy resumes. */
    unsigned fresh0 = pager_fresh_faults;
    fill(sdata, PAGE, 3);
    l4_msg_init(&sbuf, 4, 1);
    sbuf.w[0] = 11;
    sbuf.w[1] = 22;
    sbuf.h.snd_dope = l4_msg_dope(2, 1);
    l4_msg_snd_string(&sbuf, 0, sdata, PAGE);
    l4_msg_init(&rbuf, 4, 1);
    l4_msg_rcv_string(&rbuf, 0, (void *)(FRESH(12) + PAGE / 2), PAGE);
    l4_msg_strdopes(&rbuf)[0].snd_size = 0;
    memset(fresh_frames[12], 0, PAGE);
    memset(fresh_frames[13], 0, PAGE);
    l4_threadid_t t = px_start(PX_TOUCH_WAIT, &rbuf, L4_IPC_NEVER);
    l4_msgdope_t d = 0;
    int err = l4_ipc_send_long(t, &sbuf, 0, L4_IPC_NEVER, &d);
    CHECK(err == 0, "send: %#x", d);
    CHECK(px_finish(), "the receiver did not finish");
    CHECK(px_err == 0 && px_dope == l4_msg_dope(2, 1), "receive: err %#x dope %#x", px_err,
          px_dope);
    CHECK(same(fresh_frames[12] + PAGE / 2, sdata, PAGE / 2), "first half did not arrive");
    CHECK(same(fresh_frames[13], sdata + PAGE / 2, PAGE / 2), "second half did not arrive");
    CHECK(fresh_frames[13][PAGE / 2] == 0, "written past the string");
    CHECK(l4_msg_strdopes(&rbuf)[0].snd_size == PAGE, "received size %u",
          l4_msg_strdopes(&rbuf)[0].snd_size);
    CHECK(l4_msg_strdopes(&rbuf)[0].snd_str == FRESH(12) + PAGE / 2, "received at %#x",
          l4_msg_strdopes(&rbuf)[0].snd_str);
    CHECK(pager_fresh_faults == fresh0 + 2, "fresh faults %u (touch + copy)",
          pager_fresh_faults - fresh0);
    CHECK(pager_last_fault == FRESH(13) + L4_PF_WRITE, "fault word %#x", pager_last_fault);

    /* The other way round: the sender waits first, the receiver's own receive runs the copy
     * and faults in its own space (fresh page 15): it calls its pager itself. */
    fill(sdata, 300, 9);
    sbuf.h.snd_dope = l4_msg_dope(2, 1);
    l4_msg_snd_string(&sbuf, 0, sdata, 300);
    l4_msg_rcv_string(&rbuf, 0, (void *)(FRESH(15) + 100), 1000);
    memset(fresh_frames[15], 0, PAGE);
    px_sleep_ms = 3;
    t = px_start(PX_WAIT_LONG, &rbuf, L4_IPC_NEVER);
    err = l4_ipc_send_long(t, &sbuf, 0, L4_IPC_NEVER, &d);
    CHECK(err == 0, "queued send: %#x", d);
    CHECK(px_finish() && px_err == 0 && px_dope == l4_msg_dope(2, 1),
          "receive: err %#x dope %#x", px_err, px_dope);
    CHECK(same(fresh_frames[15] + 100, sdata, 300), "string did not arrive");
    CHECK(l4_msg_strdopes(&rbuf)[0].snd_size == 300, "received size %u",
          l4_msg_strdopes(&rbuf)[0].snd_size);
    CHECK(pager_last_fault == FRESH(15) + 100 + L4_PF_WRITE, "fault word %#x", pager_last_fault);

    /* A fault in the sender's space, the transfer run by the receiver: the sender (a task
     * that waits queued) runs the page fault on its pager: its string is fresh page 14. */
    fill(fresh_frames[14], PAGE, 5);
    l4_msg_init(&tbuf, 4, 1);
    tbuf.h.snd_dope = l4_msg_dope(2, 1);
    l4_msg_snd_string(&tbuf, 0, (void *)FRESH(14), PAGE);
    l4_msg_init(&rbuf, 4, 1);
    l4_msg_rcv_string(&rbuf, 0, rdata, 2 * PAGE);
    memset(rdata, 0, 2 * PAGE);
    t = px_start(PX_SEND_ROOT, &tbuf, L4_IPC_NEVER);
    CHECK(wait_state(t, L4_TS_PENDING_SEND, 100), "the sender does not wait: %#x", state_of(t));
    err = l4_ipc_receive_long(t, &rbuf, L4_IPC_NEVER, &d);
    CHECK(err == 0 && d == l4_msg_dope(2, 1), "receive from a faulting sender: %#x", d);
    CHECK(same(rdata, fresh_frames[14], PAGE), "the sender's page did not arrive");
    CHECK(pager_last_fault == FRESH(14), "fault word %#x (a read)", pager_last_fault);
    CHECK(px_finish() && px_err == 0, "sender: %#x", px_err);
    return 0;
}

int test_long_cut(void)
{
    l4_msgdope_t d = 0;
    /* 12 dwords into room for 6: 6 arrive, both sides hear of the cut */
    l4_msg_init(&sbuf, 32, 0);
    for (unsigned i = 0; i < 12; i++)
        sbuf.w[i] = 100 + i;
    sbuf.h.snd_dope = l4_msg_dope(12, 0);
    l4_msg_init(&rbuf, 6, 0);
    for (unsigned i = 0; i < 10; i++)
        rbuf.w[i] = 0;
    l4_threadid_t t = px_start(PX_WAIT_LONG, &rbuf, L4_IPC_NEVER);
    int err = l4_ipc_send_long(t, &sbuf, 0, L4_IPC_NEVER, &d);
    CHECK(err == L4_IPC_SEMSGCUT, "sender: %#x", d);
    CHECK(px_finish() && px_dope == (l4_msg_dope(6, 0) | L4_IPC_REMSGCUT),
          "receiver: dope %#x", px_dope);
    CHECK(rbuf.w[5] == 105 && rbuf.w[6] == 0, "dwords 5, 6: %u %u", rbuf.w[5], rbuf.w[6]);

    /* a 100-byte string into 40 bytes: 40 arrive, the receiver's dope says 40 */
    fill(sdata, 100, 1);
    l4_msg_init(&sbuf, 4, 2);
    sbuf.h.snd_dope = l4_msg_dope(2, 1);
    l4_msg_snd_string(&sbuf, 0, sdata, 100);
    l4_msg_init(&rbuf, 4, 2);
    memset(rdata, 0, 200);
    l4_msg_rcv_string(&rbuf, 0, rdata, 40);
    t = px_start(PX_WAIT_LONG, &rbuf, L4_IPC_NEVER);
    err = l4_ipc_send_long(t, &sbuf, 0, L4_IPC_NEVER, &d);
    CHECK(err == L4_IPC_SEMSGCUT, "string sender: %#x", d);
    CHECK(px_finish() && px_dope == (l4_msg_dope(2, 1) | L4_IPC_REMSGCUT),
          "string receiver: dope %#x", px_dope);
    CHECK(same(rdata, sdata, 40) && rdata[40] == 0, "40 bytes, no more");
    CHECK(l4_msg_strdopes(&rbuf)[0].snd_size == 40, "size %u", l4_msg_strdopes(&rbuf)[0].snd_size);

    /* two strings to a receiver that takes one */
    sbuf.h.snd_dope = l4_msg_dope(2, 2);
    l4_msg_snd_string(&sbuf, 0, sdata, 10);
    l4_msg_snd_string(&sbuf, 1, sdata + 10, 10);
    l4_msg_init(&rbuf, 4, 1);
    l4_msg_rcv_string(&rbuf, 0, rdata, 64);
    t = px_start(PX_WAIT_LONG, &rbuf, L4_IPC_NEVER);
    err = l4_ipc_send_long(t, &sbuf, 0, L4_IPC_NEVER, &d);
    CHECK(err == L4_IPC_SEMSGCUT, "strings sender: %#x", d);
    CHECK(px_finish() && px_dope == (l4_msg_dope(2, 1) | L4_IPC_REMSGCUT),
          "strings receiver: dope %#x", px_dope);

    /* a long message to a short receive: the registers only, cut */
    l4_msg_init(&sbuf, 8, 0);
    sbuf.w[0] = 0xAB;
    sbuf.w[1] = 0xCD;
    sbuf.h.snd_dope = l4_msg_dope(5, 0);
    t = px_start(PX_WAIT_SHORT, 0, L4_IPC_NEVER);
    err = l4_ipc_send_long(t, &sbuf, 0, L4_IPC_NEVER, &d);
    CHECK(err == L4_IPC_SEMSGCUT, "to a short receive: %#x", d);
    CHECK(px_finish() && px_dope == L4_IPC_REMSGCUT && px_w0 == 0xAB && px_w1 == 0xCD,
          "short receiver: dope %#x words %#x %#x", px_dope, px_w0, px_w1);
    return 0;
}

#define THIRD_LTHREAD 22
static l4_threadid_t third_target;
static volatile int third_done, third_err;
static volatile unsigned third_state_rcv, third_state_snd;
static void third(void *arg)            /* a root thread: meddle with a locked transfer */
{
    (void)arg;
    sleep_ms(1);
    third_state_rcv = state_of(third_target);
    third_state_snd = state_of(root_id);
    third_err = l4_ipc_send(third_target, L4_IPC_SHORT_MSG, 1, 2, L4_IPC_SEND_TIMEOUT_0, 0);
    third_done = 1;
    l4_sleep_forever();
}

int test_long_pf_timeout(void)
{
    l4_msgdope_t d = 0;
    /* the receive string is where the pager gives no answer: the sender's snd_pfault
     * (p = 12: 64 us, one tick) expires; the pager saw the write fault */
    unsigned refused0 = pager_refused;
    fill(sdata, 64, 2);
    l4_msg_init(&sbuf, 4, 1);
    sbuf.h.snd_dope = l4_msg_dope(2, 1);
    l4_msg_snd_string(&sbuf, 0, sdata, 64);
    l4_msg_init(&rbuf, 4, 1);
    l4_msg_rcv_string(&rbuf, 0, (void *)0x38000000, 64);
    l4_threadid_t t = px_start(PX_WAIT_LONG, &rbuf, L4_IPC_NEVER);
    int err = l4_ipc_send_long(t, &sbuf, 0, l4_timeout_pf(L4_IPC_NEVER, 12, 0), &d);
    CHECK(err == L4_IPC_SESNDPFTO, "sender: %#x", d);
    CHECK(px_finish() && (px_dope & L4_IPC_ERROR_MASK) == L4_IPC_RESNDPFTO,
          "receiver: %#x", px_dope);
    CHECK(pager_refused == refused0 + 1 && pager_last_refused == 0x38000000 + L4_PF_WRITE,
          "pager: refused %u, last %#x", pager_refused - refused0, pager_last_refused);

    /* while the copy waits for the receiver's pager (p = 9: about 4 ms), both partners are
     * locked: a third thread cannot send to the receiver (it waits for its pager: state 9),
     * and the sender is reported running */
    t = px_start(PX_WAIT_LONG, &rbuf, L4_IPC_NEVER);
    third_target = t;
    third_done = 0;
    thread(THIRD_LTHREAD, third, 0);
    err = l4_ipc_send_long(t, &sbuf, 0, l4_timeout_pf(L4_IPC_NEVER, 9, 0), &d);
    CHECK(err == L4_IPC_SESNDPFTO, "sender: %#x", d);
    CHECK(third_done, "the third thread did not run meanwhile");
    CHECK(third_err == L4_IPC_SETIMEOUT, "third thread's send: %#x", third_err);
    CHECK(third_state_rcv == 9 && third_state_snd == L4_TS_RUNNING,
          "states: receiver %#x, sender %#x", third_state_rcv, third_state_snd);
    CHECK(px_finish() && (px_dope & L4_IPC_ERROR_MASK) == L4_IPC_RESNDPFTO,
          "receiver: %#x", px_dope);

    /* a zero page-fault timeout (p = 15): expires at once, the pager hears nothing */
    refused0 = pager_refused;
    t = px_start(PX_WAIT_LONG, &rbuf, L4_IPC_NEVER);
    err = l4_ipc_send_long(t, &sbuf, 0, l4_timeout_pf(L4_IPC_NEVER, 15, 0), &d);
    CHECK(err == L4_IPC_SESNDPFTO, "zero timeout: %#x", d);
    CHECK(px_finish() && (px_dope & L4_IPC_ERROR_MASK) == L4_IPC_RESNDPFTO,
          "zero timeout receiver: %#x", px_dope);
    CHECK(pager_refused == refused0, "the pager was asked");

    /* a fault in the sender's space under the receiver's rcv_pfault */
    l4_msg_init(&tbuf, 4, 1);
    tbuf.h.snd_dope = l4_msg_dope(2, 1);
    l4_msg_snd_string(&tbuf, 0, (void *)0x38001000, 64);
    l4_msg_init(&rbuf, 4, 1);
    l4_msg_rcv_string(&rbuf, 0, rdata, 64);
    t = px_start(PX_SEND_ROOT, &tbuf, L4_IPC_NEVER);
    CHECK(wait_state(t, L4_TS_PENDING_SEND, 100), "the sender does not wait");
    err = l4_ipc_receive_long(t, &rbuf, l4_timeout_pf(L4_IPC_NEVER, 0, 12), &d);
    CHECK(err == L4_IPC_RERCVPFTO, "receiver: %#x", d);
    CHECK(px_finish() && (px_dope & L4_IPC_ERROR_MASK) == L4_IPC_SERCVPFTO,
          "sender: %#x", px_dope);
    return 0;
}

#define KILLER_LTHREAD 20
static volatile int killer_done;
static void killer(void *arg)           /* a root thread: delete the partner task in 5 ms */
{
    (void)arg;
    sleep_ms(5);
    killer_done = 1;
    kill(PX_TASK);
    l4_sleep_forever();
}

int test_long_hostile(void)
{
    l4_msgdope_t d = 0;
    l4_timeout_t zero_pf = l4_timeout_pf(L4_IPC_NEVER, 15, 15);
    /* a receive buffer in kernel memory: cut, nothing written there */
    l4_msg_init(&sbuf, 8, 0);
    sbuf.h.snd_dope = l4_msg_dope(8, 0);
    l4_threadid_t t = px_start(PX_WAIT_RAW, (void *)0xC0001000, L4_IPC_NEVER);
    int err = l4_ipc_send_long(t, &sbuf, 0, zero_pf, &d);
    CHECK(err == L4_IPC_SEMSGCUT, "kernel receive buffer: %#x", d);
    CHECK(px_finish() && px_dope == L4_IPC_REMSGCUT, "its receiver: %#x", px_dope);

    /* strings from the KIP (user-readable, but kernel memory), into kernel memory, the TCB
     * area: cut, nothing copied */
    static const l4_umword_t bad[][2] = {
        {L4_KIP_ADDR, 0}, {0, 0xC0000000u}, {0, 0xE0000000u}, {0, 0xFFFFF000u},
    };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        l4_msg_init(&sbuf, 4, 1);
        sbuf.h.snd_dope = l4_msg_dope(2, 1);
        l4_msg_snd_string(&sbuf, 0, bad[i][0] ? (void *)bad[i][0] : sdata, 64);
        l4_msg_init(&rbuf, 4, 1);
        memset(rdata, 0, 64);
        l4_msg_rcv_string(&rbuf, 0, bad[i][1] ? (void *)bad[i][1] : rdata, 64);
        t = px_start(PX_WAIT_LONG, &rbuf, L4_IPC_NEVER);
        err = l4_ipc_send_long(t, &sbuf, 0, L4_IPC_NEVER, &d);
        CHECK(err == L4_IPC_SEMSGCUT, "case %u: sender %#x", i, d);
        CHECK(px_finish() && px_dope == (l4_msg_dope(2, 0) | L4_IPC_REMSGCUT),
              "case %u: receiver %#x", i, px_dope);
        CHECK(rdata[0] == 0, "case %u: the KIP was copied", i);
    }

    /* absurd dopes: 2^19-1 dwords to room for 8 (cut at 8); 31 strings whose dopes lie 2 MiB
     * past the buffer, where nothing is mapped (a zero page-fault timeout: at once) */
    l4_msg_init(&sbuf, 8, 0);
    sbuf.h.size_dope = l4_msg_dope(0x7FFFF, 31);
    sbuf.h.snd_dope = l4_msg_dope(0x7FFFF, 31);
    l4_msg_init(&rbuf, 8, 0);
    t = px_start(PX_WAIT_LONG, &rbuf, L4_IPC_NEVER);
    err = l4_ipc_send_long(t, &sbuf, 0, L4_IPC_NEVER, &d);
    CHECK(err == L4_IPC_SEMSGCUT, "huge dwords: %#x", d);
    CHECK(px_finish() && px_dope == (l4_msg_dope(8, 0) | L4_IPC_REMSGCUT), "receiver %#x",
          px_dope);
    sbuf.h.snd_dope = l4_msg_dope(2, 31);
    l4_msg_init(&rbuf, 8, 4);
    t = px_start(PX_WAIT_LONG, &rbuf, zero_pf);
    err = l4_ipc_send_long(t, &sbuf, 0, L4_IPC_NEVER, &d);
    CHECK(err == L4_IPC_SERCVPFTO, "string dopes far away: %#x", d);
    CHECK(px_finish() && (px_dope & L4_IPC_ERROR_MASK) == L4_IPC_RERCVPFTO, "receiver %#x",
          px_dope);

    /* the send buffer itself unmapped (outside RAM for sigma0): the receiver's zero
     * rcv_pfault ends it at once */
    t = px_start(PX_WAIT_LONG, &rbuf, zero_pf);
    struct l4_regs r = {0x3F000000, zero_pf, 0, 0, t.low, t.high, L4_IPC_NIL_DESCRIPTOR};
    l4_syscall(&r, L4_SYS_IPC);
    CHECK((r.eax & L4_IPC_ERROR_MASK) == L4_IPC_SERCVPFTO, "unmapped buffer: %#x", r.eax);
    CHECK(px_finish() && (px_dope & L4_IPC_ERROR_MASK) == L4_IPC_RERCVPFTO, "receiver %#x",
          px_dope);

    /* overlapping receive strings: both land, the second over the first */
    fill(sdata, 64, 4);
    l4_msg_init(&sbuf, 4, 2);
    sbuf.h.snd_dope = l4_msg_dope(2, 2);
    l4_msg_snd_string(&sbuf, 0, sdata, 32);
    l4_msg_snd_string(&sbuf, 1, sdata + 32, 32);
    l4_msg_init(&rbuf, 4, 2);
    memset(rdata, 0, 64);
    l4_msg_rcv_string(&rbuf, 0, rdata, 32);
    l4_msg_rcv_string(&rbuf, 1, rdata + 16, 32);
    t = px_start(PX_WAIT_LONG, &rbuf, L4_IPC_NEVER);
    err = l4_ipc_send_long(t, &sbuf, 0, L4_IPC_NEVER, &d);
    CHECK(err == 0, "overlap: %#x", d);
    CHECK(px_finish() && px_dope == l4_msg_dope(2, 2), "overlap receiver %#x", px_dope);
    CHECK(same(rdata, sdata, 16) && same(rdata + 16, sdata + 32, 32), "overlap data");

    /* the partner task is deleted while the copy waits for its pager (which never answers,
     * and the page-fault timeout is never): the sender hears SEABORTED, nothing hangs */
    l4_msg_init(&sbuf, 4, 1);
    sbuf.h.snd_dope = l4_msg_dope(2, 1);
    l4_msg_snd_string(&sbuf, 0, sdata, 64);
    l4_msg_init(&rbuf, 4, 1);
    l4_msg_rcv_string(&rbuf, 0, (void *)0x38002000, 64);
    t = px_start(PX_WAIT_LONG, &rbuf, L4_IPC_NEVER);
    killer_done = 0;
    thread(KILLER_LTHREAD, killer, 0);
    err = l4_ipc_send_long(t, &sbuf, 0, L4_IPC_NEVER, &d);
    CHECK(err == L4_IPC_SEABORTED, "partner deleted: %#x", d);
    CHECK(killer_done, "returned before the deletion");
    px_finish();
    /* the same with the sender deleted while the receiver's copy waits for the sender's
     * pager: the receiver hears REABORTED */
    l4_msg_init(&tbuf, 4, 1);
    tbuf.h.snd_dope = l4_msg_dope(2, 1);
    l4_msg_snd_string(&tbuf, 0, (void *)0x38003000, 64);
    l4_msg_init(&rbuf, 4, 1);
    l4_msg_rcv_string(&rbuf, 0, rdata, 64);
    t = px_start(PX_SEND_ROOT, &tbuf, L4_IPC_NEVER);
    CHECK(wait_state(t, L4_TS_PENDING_SEND, 100), "the sender does not wait");
    killer_done = 0;
    thread(KILLER_LTHREAD + 1, killer, 0);
    err = l4_ipc_receive_long(t, &rbuf, L4_IPC_NEVER, &d);
    CHECK(err == L4_IPC_REABORTED, "sender deleted: %#x", d);
    CHECK(killer_done, "returned before the deletion");
    px_finish();
    return 0;
}

int test_long_map(void)
{
    /* a map message from a memory buffer: the register pair and the pair in dwords 2-3 are
     * mapped into the window the receiver's buffer names (its rcv_fpage); dwords 4-5 (an
     * fpage 0) end the list, the dwords beyond arrive as dwords */
    static l4_umword_t pages[2][PAGE / 4] __attribute__((aligned(PAGE)));
    pages[0][0] = 0x11110000;
    pages[1][0] = 0x22220000;
    l4_msg_init(&sbuf, 8, 0);
    sbuf.w[0] = 0;
    sbuf.w[1] = l4_fpage((uintptr_t)pages[0], L4_PAGESHIFT, 0, 0);
    sbuf.w[2] = PAGE;
    sbuf.w[3] = l4_fpage((uintptr_t)pages[1], L4_PAGESHIFT, 0, 0);
    sbuf.w[4] = 2 * PAGE;
    sbuf.w[5] = 0;
    sbuf.w[6] = 0x600D;
    sbuf.h.snd_dope = l4_msg_dope(7, 0);
    l4_msg_init(&rbuf, 8, 0);
    rbuf.h.rcv_fpage = l4_fpage(0x20000000, 14, 1, 0);
    l4_threadid_t t = px_start(PX_WAIT_MAP, &rbuf, L4_IPC_NEVER);
    l4_msgdope_t d = 0;
    int err = l4_ipc_send_long(t, &sbuf, 1, L4_IPC_NEVER, &d);
    CHECK(err == 0, "send: %#x", d);
    CHECK(px_finish() && px_dope == (l4_msg_dope(7, 0) | L4_IPC_DOPE_FPAGE_RECEIVED),
          "receiver: dope %#x", px_dope);
    CHECK(px_w0 == 0x11110000 && px_w1 == 0x22220000, "mapped pages read %#x %#x", px_w0,
          px_w1);
    CHECK(rbuf.w[6] == 0x600D && rbuf.w[3] == sbuf.w[3], "dwords %#x %#x", rbuf.w[6], rbuf.w[3]);
    return 0;
}

int test_long_cost(void)
{
    /* One-way cost in guest instructions (1 instruction = 1 ns of the TSC) from the
     * sender's call of libl4 to the receiver's return from it, the receiver waiting, every
     * page mapped: short call (fast path), 8 dwords, one 4 KiB string. */
    l4_msg_init(&rbuf, 8, 1);
    l4_msg_rcv_string(&rbuf, 0, rdata, PAGE);
    l4_threadid_t t = px_start(PX_ECHO, &rbuf, L4_IPC_NEVER);
    l4_msg_init(&sbuf, 8, 1);
    l4_msg_snd_string(&sbuf, 0, sdata, PAGE);
    uint64_t cost[3] = {0, 0, 0};
    for (unsigned round = 0; round < 3; round++) {      /* the first maps the pages */
        for (unsigned k = 0; k < 3; k++) {
            wait_state(t, L4_TS_WAIT_RECEIVE, 100);
            sbuf.h.snd_dope = k == 1 ? l4_msg_dope(8, 0) : l4_msg_dope(2, 1);
            uint64_t t0 = l4_rdtsc();
            int err;
            if (k == 0)
                err = l4_ipc_call(t, L4_IPC_SHORT_MSG, 1, 2, L4_IPC_SHORT_MSG, 0, 0,
                                  L4_IPC_NEVER, 0);
            else
                err = l4_ipc_call_long(t, &sbuf, 0, L4_IPC_NEVER, 0);
            CHECK(err == 0, "round %u kind %u: %#x", round, k, err);
            cost[k] = px_when - t0;
        }
    }
    printf("ktest: long ipc cost: short %u, 8 dwords %u, 4 KiB string %u instructions\n",
           (unsigned)cost[0], (unsigned)cost[1], (unsigned)cost[2]);
    kill(PX_TASK);
    CHECK(cost[1] > cost[0] && cost[2] > cost[1], "costs %u %u %u", (unsigned)cost[0],
          (unsigned)cost[1], (unsigned)cost[2]);
    return 0;
}

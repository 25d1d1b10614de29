/* servers/ktest/t_clan.c: clans and chiefs (docs/abi.md, "Clans and chiefs"): IPC redirected
 * out of a clan and into one, chiefs forwarding with deceit, an RPC through a chief,
 * id_nearest, and deleting a chief deleting its clan.
 *
 * The tree: the root task (4) creates A (task 40) and B (41); A creates A1 (42), A1 creates
 * A11 (43).  Every member runs member(): it creates its child, if it has one, and is that
 * child's pager (it touches the page itself, so that its own pager maps it, and maps it on);
 * it forwards what is redirected to it with deceit, records any other message (a call,
 * w1 = CALL_MAGIC, gets w0 + 1 back), and runs the root task's commands (shared memory,
 * looked at every millisecond). */
#include "ktest.h"

#define TASK_A 40
#define TASK_B 41
#define TASK_A1 42
#define TASK_A11 43
#define CALL_MAGIC 0xCA11u
#define REPLY_MAGIC 0xEE11u
#define CLAN_DOPE (L4_IPC_DOPE_DECEITED | L4_IPC_DOPE_REDIRECTED | L4_IPC_DOPE_SRC_INSIDE)

enum { CMD_NONE, CMD_SEND, CMD_CALL, CMD_NEAREST, CMD_DECEIT, CMD_ANSWER };

struct member {
    unsigned task, child;               /* its task number, the one it creates (0: none) */
    volatile l4_threadid_t id;
    /* a command of the root task and its result */
    volatile int cmd, done, err;
    volatile l4_threadid_t target, vsrc, rid;
    volatile l4_umword_t w0, r0;
    volatile l4_msgdope_t dope;
    /* the last message it got for itself */
    volatile unsigned got;
    volatile l4_threadid_t got_src;
    volatile l4_msgdope_t got_dope;
    volatile l4_umword_t got_w0;
    /* the last message redirected to it (which it forwarded) */
    volatile unsigned fwd;
    volatile l4_threadid_t fwd_src, fwd_dest;
    volatile l4_msgdope_t fwd_dope;
    volatile l4_umword_t fwd_w0;
    volatile int fwd_err;
    /* the last message redirected to it that its short receive cut (a long one) */
    volatile unsigned cut;
    volatile l4_threadid_t cut_src, cut_dest;
    volatile l4_msgdope_t cut_dope;
};

static struct member members[4];        /* A, B, A1, A11 */
static struct member *const A = &members[0], *const B = &members[1], *const A1 = &members[2],
                     *const A11 = &members[3];
static char member_stacks[4][PAGE] __attribute__((aligned(PAGE)));

static void member(void *arg);

static void handle(struct member *me, l4_ipc_deceit_ids_t *ids, l4_umword_t w0,
                   l4_umword_t w1, l4_msgdope_t dope)
{
    if (dope & L4_IPC_DOPE_REDIRECTED) {
        me->fwd_src = ids->true_src;
        me->fwd_dest = ids->dest;
        me->fwd_dope = dope;
        me->fwd_w0 = w0;
        /* an answer that goes straight to the caller: it is waiting already (send timeout
         * 0, as V2 servers reply); anything else may have to wait for its receiver */
        l4_threadid_t n;
        l4_timeout_t to = SND_MS(20);
        if (w1 == REPLY_MAGIC && l4_id_nearest(ids->dest, &n) == L4_NC_SAME_CLAN)
            to = L4_IPC_SEND_TIMEOUT_0;
        l4_ipc_deceit_ids_t on = {ids->dest, ids->true_src};
        me->fwd_err = l4_ipc_send_deceiting(on, L4_IPC_SHORT_MSG, w0, w1, to, 0);
        me->fwd++;
        return;
    }
    unsigned chief = (ids->true_src.high >> L4_ID_CHIEF_SHIFT) & L4_ID_TASK_MASK;
    if (!(dope & L4_IPC_DOPE_DECEITED) && chief == me->task) {
        /* a page fault of a task of its clan */
        l4_umword_t page = w0 & ~(PAGE - 1);
        (void)*(volatile char *)page;
        l4_ipc_send(ids->true_src, L4_IPC_SHORT_FPAGE, page, l4_fpage(page, L4_PAGESHIFT, 1, 0),
                    SND_MS(20), 0);
        return;
    }
    me->got_src = ids->true_src;
    me->got_dope = dope;
    me->got_w0 = w0;
    me->got++;
    if (w1 == CALL_MAGIC)
        l4_ipc_send(ids->true_src, L4_IPC_SHORT_MSG, w0 + 1, REPLY_MAGIC, SND_MS(20), 0);
}

static void command(struct member *me)
{
    int cmd = me->cmd;
    if (cmd == CMD_NONE || me->done)
        return;
    l4_threadid_t t = me->target, rid = L4_NIL_ID;
    l4_umword_t r0 = 0;
    l4_msgdope_t dope = 0;
    int err = 0;
    if (cmd == CMD_SEND) {
        err = l4_ipc_send(t, L4_IPC_SHORT_MSG, me->w0, 0, SND_MS(50), &dope);
    } else if (cmd == CMD_CALL) {
        err = l4_ipc_call(t, L4_IPC_SHORT_MSG, me->w0, CALL_MAGIC, L4_IPC_SHORT_MSG, &r0, 0,
                          l4_ipc_timeout(50000, 100000), &dope);
    } else if (cmd == CMD_NEAREST) {
        err = l4_id_nearest(t, &rid);
    } else if (cmd == CMD_ANSWER) {
        /* busy for a while; then take the next message redirected here and answer it at
         * once, as its destination, with send timeout 0 */
        sleep_ms(10);
        l4_ipc_deceit_ids_t ids = {L4_NIL_ID, L4_NIL_ID};
        l4_umword_t a = 0, b = 0;
        err = l4_ipc_wait_redirect(&ids, L4_IPC_SHORT_MSG, &a, &b, RCV_MS(50), &dope);
        rid = ids.true_src;
        if (!err) {
            l4_ipc_deceit_ids_t back = {ids.true_src, ids.dest};
            err = l4_ipc_send_deceiting(back, L4_IPC_SHORT_MSG, a + 100, 0,
                                        L4_IPC_SEND_TIMEOUT_0, &dope);
        }
    } else if (cmd == CMD_DECEIT) {
        l4_ipc_deceit_ids_t ids = {t, me->vsrc};
        err = l4_ipc_send_deceiting(ids, L4_IPC_SHORT_MSG, me->w0, 0, SND_MS(50), &dope);
    }
    me->err = err;
    me->dope = dope;
    me->r0 = r0;
    me->rid = rid;
    me->done = 1;
}

static void member(void *arg)
{
    struct member *me = arg;
    if (me->child) {
        struct member *c = me == A ? A1 : A11;
        l4_umword_t esp = l4_stack_prepare(member, c, member_stacks[c - members], PAGE);
        l4_task_new(l4_task_id(me->child), 0, esp, (uintptr_t)member, l4_myself());
    }
    me->id = l4_myself();
    for (;;) {
        l4_ipc_deceit_ids_t ids = {L4_NIL_ID, L4_NIL_ID};
        l4_umword_t w0 = 0, w1 = 0;
        l4_msgdope_t dope = 0;
        int err = l4_ipc_wait_redirect(&ids, L4_IPC_SHORT_MSG, &w0, &w1, RCV_MS(1), &dope);
        if (err == 0) {
            handle(me, &ids, w0, w1, dope);
        } else if (dope & L4_IPC_DOPE_REDIRECTED) {
            me->cut_src = ids.true_src;
            me->cut_dest = ids.dest;
            me->cut_dope = dope;
            me->cut++;
        }
        command(me);
    }
}

static void start_cmd(struct member *m, int cmd, l4_threadid_t target, l4_umword_t w0)
{
    m->done = 0;
    m->target = target;
    m->w0 = w0;
    m->cmd = cmd;
}

static int finish_cmd(struct member *m)
{
    for (unsigned i = 0; i < 300 && !m->done; i++)
        sleep_ms(1);
    m->cmd = CMD_NONE;
    return m->done;
}

static int run_cmd(struct member *m, int cmd, l4_threadid_t target, l4_umword_t w0)
{
    start_cmd(m, cmd, target, w0);
    return finish_cmd(m);
}

static int settle(volatile unsigned *counter, unsigned old)
{
    for (unsigned i = 0; i < 100 && *counter == old; i++)
        sleep_ms(1);
    return *counter != old;
}

/* The tree, all members waiting; 0 if it could not be built. */
static int tree_up(void)
{
    static const unsigned tasks[4][2] = {{TASK_A, TASK_A1}, {TASK_B, 0}, {TASK_A1, TASK_A11},
                                         {TASK_A11, 0}};
    for (unsigned i = 0; i < 4; i++) {
        memset((void *)&members[i], 0, sizeof members[i]);
        members[i].task = tasks[i][0];
        members[i].child = tasks[i][1];
    }
    /* the right to create A1 goes to A, A11's to A1 (refused, harmlessly, once done) */
    l4_task_new(l4_task_id(TASK_A1), TASK_A << L4_ID_TASK_SHIFT, 0, 0, L4_NIL_ID);
    l4_task_new(l4_task_id(TASK_A11), TASK_A1 << L4_ID_TASK_SHIFT, 0, 0, L4_NIL_ID);
    spawn(TASK_A, member, A);
    spawn(TASK_B, member, B);
    for (unsigned i = 0; i < 100; i++) {
        if (!l4_is_nil(A11->id) && !l4_is_nil(B->id))
            return 1;
        sleep_ms(1);
    }
    return 0;
}

static void tree_down(void)
{
    kill(TASK_A);
    kill(TASK_B);
}

int test_clan_redirect_out(void)
{
    CHECK(tree_up(), "the tree did not come up: A11 %#x", A11->id.low);
    CHECK(A1->id.high == ((TASK_A << L4_ID_CHIEF_SHIFT) | (2u << L4_ID_NEST_SHIFT)),
          "A1's chief/nest %#x", A1->id.high);
    /* A1 -> B leaves A's clan: A gets it (src_inside), forwards it with deceit */
    unsigned fwd = A->fwd, got = B->got;
    CHECK(run_cmd(A1, CMD_SEND, B->id, 0x1111) && A1->err == 0, "A1's send: %#x", A1->err);
    CHECK(settle(&B->got, got), "B got nothing");
    settle(&A->fwd, fwd);
    CHECK(A->fwd == fwd + 1 && A->fwd_err == 0, "A forwarded %u (%#x)", A->fwd - fwd,
          A->fwd_err);
    CHECK(l4_same(A->fwd_src, A1->id) && l4_same(A->fwd_dest, B->id),
          "A got it from %#x for %#x", A->fwd_src.low, A->fwd_dest.low);
    CHECK((A->fwd_dope & CLAN_DOPE) == (L4_IPC_DOPE_REDIRECTED | L4_IPC_DOPE_SRC_INSIDE) &&
          A->fwd_w0 == 0x1111, "A's dope %#x w0 %#x", A->fwd_dope, A->fwd_w0);
    CHECK(l4_same(B->got_src, A1->id) && (B->got_dope & CLAN_DOPE) == L4_IPC_DOPE_DECEITED &&
          B->got_w0 == 0x1111, "B got %#x from %#x", B->got_dope, B->got_src.low);
    /* A11 -> B leaves two clans: A1 forwards (still A11's, deceit), then A */
    unsigned fwd1 = A1->fwd;
    fwd = A->fwd;
    got = B->got;
    CHECK(run_cmd(A11, CMD_SEND, B->id, 0x1212) && A11->err == 0, "A11: %#x", A11->err);
    CHECK(settle(&B->got, got), "B got nothing from A11");
    settle(&A1->fwd, fwd1);
    settle(&A->fwd, fwd);
    CHECK(A1->fwd == fwd1 + 1 && l4_same(A1->fwd_src, A11->id) &&
          (A1->fwd_dope & CLAN_DOPE) == (L4_IPC_DOPE_REDIRECTED | L4_IPC_DOPE_SRC_INSIDE),
          "A1 forwarded %u, %#x from %#x", A1->fwd - fwd1, A1->fwd_dope, A1->fwd_src.low);
    CHECK(A->fwd == fwd + 1 && l4_same(A->fwd_src, A11->id) && l4_same(A->fwd_dest, B->id) &&
          (A->fwd_dope & CLAN_DOPE) == CLAN_DOPE,
          "A forwarded %u, %#x from %#x", A->fwd - fwd, A->fwd_dope, A->fwd_src.low);
    CHECK(l4_same(B->got_src, A11->id) && (B->got_dope & CLAN_DOPE) == L4_IPC_DOPE_DECEITED &&
          B->got_w0 == 0x1212, "B got %#x from %#x", B->got_dope, B->got_src.low);
    tree_down();
    return 0;
}

int test_clan_long_redirect(void)
{
    /* A long message is routed like a short one: root -> A1 (4 dwords) enters A's clan and
     * reaches A, redirected, where A's short receive cuts it; A1 never sees it. */
    static L4_MSGBUF(4, 0) m;
    CHECK(tree_up(), "the tree did not come up");
    unsigned cut = A->cut, got = A1->got;
    l4_msg_init(&m, 4, 0);
    for (unsigned i = 0; i < 4; i++)
        m.w[i] = 0x4440u + i;
    m.h.snd_dope = l4_msg_dope(4, 0);
    l4_msgdope_t d = 0;
    int err = l4_ipc_send_long(A1->id, &m, 0, SND_MS(50), &d);
    CHECK(err == L4_IPC_SEMSGCUT, "send: %#x (dope %#x)", err, d);
    CHECK(settle(&A->cut, cut), "A got nothing");
    CHECK(l4_same(A->cut_src, root_id) && l4_same(A->cut_dest, A1->id),
          "A got it from %#x for %#x", A->cut_src.low, A->cut_dest.low);
    CHECK((A->cut_dope & CLAN_DOPE) == L4_IPC_DOPE_REDIRECTED &&
          (A->cut_dope & L4_IPC_ERROR_MASK) == L4_IPC_REMSGCUT, "A's dope %#x", A->cut_dope);
    CHECK(A1->got == got, "A1 got the message directly");
    tree_down();
    return 0;
}

int test_clan_redirect_in(void)
{
    CHECK(tree_up(), "the tree did not come up");
    /* root -> A1 enters A's clan from outside: A gets it (no src_inside) */
    unsigned fwd = A->fwd, got = A1->got;
    int err = l4_ipc_send(A1->id, L4_IPC_SHORT_MSG, 0x2222, 0, SND_MS(50), 0);
    CHECK(err == 0, "send: %#x", err);
    CHECK(settle(&A1->got, got), "A1 got nothing");
    settle(&A->fwd, fwd);
    CHECK(A->fwd == fwd + 1 && l4_same(A->fwd_src, root_id) && l4_same(A->fwd_dest, A1->id) &&
          (A->fwd_dope & CLAN_DOPE) == L4_IPC_DOPE_REDIRECTED && A->fwd_w0 == 0x2222,
          "A forwarded %u: %#x from %#x to %#x", A->fwd - fwd, A->fwd_dope, A->fwd_src.low,
          A->fwd_dest.low);
    CHECK(l4_same(A1->got_src, root_id) && (A1->got_dope & CLAN_DOPE) == L4_IPC_DOPE_DECEITED &&
          A1->got_w0 == 0x2222, "A1 got %#x from %#x", A1->got_dope, A1->got_src.low);
    /* B -> A11, two clans deep: A (the outermost clan entered), then A1 */
    unsigned fwd1 = A1->fwd;
    fwd = A->fwd;
    got = A11->got;
    CHECK(run_cmd(B, CMD_SEND, A11->id, 0x3333) && B->err == 0, "B: %#x", B->err);
    CHECK(settle(&A11->got, got), "A11 got nothing");
    settle(&A->fwd, fwd);
    settle(&A1->fwd, fwd1);
    CHECK(A->fwd == fwd + 1 && l4_same(A->fwd_src, B->id) && l4_same(A->fwd_dest, A11->id) &&
          (A->fwd_dope & CLAN_DOPE) == L4_IPC_DOPE_REDIRECTED,
          "A forwarded %u: %#x from %#x", A->fwd - fwd, A->fwd_dope, A->fwd_src.low);
    CHECK(A1->fwd == fwd1 + 1 && l4_same(A1->fwd_src, B->id) &&
          l4_same(A1->fwd_dest, A11->id) &&
          (A1->fwd_dope & CLAN_DOPE) == (L4_IPC_DOPE_REDIRECTED | L4_IPC_DOPE_DECEITED),
          "A1 forwarded %u: %#x from %#x", A1->fwd - fwd1, A1->fwd_dope, A1->fwd_src.low);
    CHECK(l4_same(A11->got_src, B->id) && (A11->got_dope & CLAN_DOPE) == L4_IPC_DOPE_DECEITED &&
          A11->got_w0 == 0x3333, "A11 got %#x from %#x", A11->got_dope, A11->got_src.low);
    tree_down();
    return 0;
}

int test_clan_call_through_chief(void)
{
    CHECK(tree_up(), "the tree did not come up");
    /* A1 calls B: A forwards the call to B as A1 and B's answer to A1 as B; A1's closed
     * receive from B accepts the answer A deceives with */
    unsigned fwd = A->fwd;
    CHECK(run_cmd(A1, CMD_CALL, B->id, 0x4444), "A1's call did not end");
    CHECK(A1->err == 0 && A1->r0 == 0x4445, "A1's call: %#x, answer %#x", A1->err, A1->r0);
    CHECK((A1->dope & CLAN_DOPE) == L4_IPC_DOPE_DECEITED, "dope %#x", A1->dope);
    settle(&A->fwd, fwd + 1);
    CHECK(A->fwd == fwd + 2 && l4_same(A->fwd_src, B->id) && l4_same(A->fwd_dest, A1->id),
          "A forwarded %u, last from %#x", A->fwd - fwd, A->fwd_src.low);
    CHECK(A->fwd_err == 0, "the answer with send timeout 0: %#x", A->fwd_err);
    CHECK(l4_same(B->got_src, A1->id), "B saw %#x", B->got_src.low);
    /* A is busy: A1's call waits at A; when A takes it, A1 waits for B at once (the
     * transition takes no time), so A's immediate answer as B may use send timeout 0 */
    unsigned got = B->got;
    start_cmd(A, CMD_ANSWER, L4_NIL_ID, 0);
    sleep_ms(2);
    CHECK(run_cmd(A1, CMD_CALL, B->id, 0x6000), "A1's second call did not end");
    CHECK(finish_cmd(A) && A->err == 0 && l4_same(A->rid, A1->id), "A's answer: %#x to %#x",
          A->err, A->rid.low);
    CHECK(A1->err == 0 && A1->r0 == 0x6064 && (A1->dope & CLAN_DOPE) == L4_IPC_DOPE_DECEITED,
          "A1's call: %#x, answer %#x, dope %#x", A1->err, A1->r0, A1->dope);
    CHECK(B->got == got, "B got it");
    /* the root task calls A11 through A and A1, and gets the answer from A11 */
    l4_umword_t r0 = 0;
    l4_msgdope_t dope = 0;
    int err = l4_ipc_call(A11->id, L4_IPC_SHORT_MSG, 0x5555, CALL_MAGIC, L4_IPC_SHORT_MSG, &r0,
                          0, l4_ipc_timeout(50000, 100000), &dope);
    CHECK(err == 0 && r0 == 0x5556 && (dope & CLAN_DOPE) == L4_IPC_DOPE_DECEITED,
          "root's call: %#x, %#x, dope %#x", err, r0, dope);
    CHECK(l4_same(A11->got_src, root_id), "A11 saw %#x", A11->got_src.low);
    CHECK(A->fwd_err == 0 && l4_same(A->fwd_dest, root_id), "A's last forward: %#x to %#x",
          A->fwd_err, A->fwd_dest.low);
    tree_down();
    return 0;
}

/* A deceiving send by int 0x30 (no receive, timeout never) with ESP = clan_bad_esp while the
 * kernel runs: the virtual source it would read is not user memory or not mapped. */
volatile l4_umword_t clan_bad_esp, clan_saved_esp;
l4_umword_t clan_bad_esp_send(l4_umword_t dest_low, l4_umword_t dest_high, l4_umword_t w0);
__asm__(".globl clan_bad_esp_send\n"
        "clan_bad_esp_send:\n"
        "    pushl %ebp\n"
        "    pushl %ebx\n"
        "    pushl %esi\n"
        "    pushl %edi\n"
        "    movl 20(%esp), %esi\n"
        "    movl 24(%esp), %edi\n"
        "    movl 28(%esp), %edx\n"
        "    xorl %ebx, %ebx\n"
        "    xorl %ecx, %ecx\n"
        "    movl $-1, %ebp\n"
        "    movl $1, %eax\n"                 /* L4_IPC_SHORT_MSG | L4_IPC_DECEIT */
        "    movl %esp, clan_saved_esp\n"
        "    movl clan_bad_esp, %esp\n"
        "    int $0x30\n"
        "    movl clan_saved_esp, %esp\n"
        "    popl %edi\n"
        "    popl %esi\n"
        "    popl %ebx\n"
        "    popl %ebp\n"
        "    ret\n");

int test_clan_deceit(void)
{
    CHECK(tree_up(), "the tree did not come up");
    /* the root task deceives into its own clan as sigma0 (outside it): permitted */
    unsigned got = B->got;
    l4_ipc_deceit_ids_t ids = {B->id, L4_SIGMA0_ID};
    l4_msgdope_t dope = 0;
    int err = l4_ipc_send_deceiting(ids, L4_IPC_SHORT_MSG, 0x6666, 0, SND_MS(50), &dope);
    CHECK(err == 0, "send: %#x", err);
    CHECK(settle(&B->got, got), "B got nothing");
    CHECK(l4_same(B->got_src, L4_SIGMA0_ID) && (B->got_dope & CLAN_DOPE) == L4_IPC_DOPE_DECEITED,
          "B got %#x from %#x", B->got_dope, B->got_src.low);
    /* not permitted, sent as B: neither B's destination (the root task) nor the virtual
     * source (A1) is inside B's clan (not direction preserving); a virtual source that does
     * not exist; B as itself (the same: nothing inside) */
    const l4_threadid_t fakes[] = {A1->id, {(100u << L4_ID_TASK_SHIFT) | 1, 0}, B->id};
    for (unsigned i = 0; i < 3; i++) {
        B->vsrc = fakes[i];
        start_cmd(B, CMD_DECEIT, root_id, 0x7770 + i);
        l4_threadid_t src;
        l4_umword_t w0 = 0;
        err = l4_ipc_wait(&src, L4_IPC_SHORT_MSG, &w0, 0, RCV_MS(100), &dope);
        CHECK(finish_cmd(B) && B->err == 0, "B's send %u: %#x", i, B->err);
        CHECK(err == 0 && w0 == 0x7770 + i, "receive %u: %#x %#x", i, err, w0);
        CHECK(l4_same(src, B->id) && (dope & CLAN_DOPE) == 0,
              "deceit %u: from %#x, dope %#x", i, src.low, dope);
    }
    /* hostile: the virtual source cannot be read (kernel memory, a page nobody mapped, across
     * the end of user memory): sent as the root task itself */
    static const l4_umword_t bad[] = {0xC0000000u, 0xFFFFFFF0u, 0x00000010u, 0xBFFFFFFEu};
    for (unsigned i = 0; i < 4; i++) {
        got = B->got;
        clan_bad_esp = bad[i];
        dope = clan_bad_esp_send(B->id.low, B->id.high, 0x9990 + i);
        CHECK((dope & L4_IPC_ERROR_MASK) == 0, "ESP %#x: %#x", bad[i], dope);
        CHECK(settle(&B->got, got), "B got nothing (ESP %#x)", bad[i]);
        CHECK(l4_same(B->got_src, root_id) && (B->got_dope & CLAN_DOPE) == 0 &&
              B->got_w0 == 0x9990 + i, "ESP %#x: B got %#x from %#x", bad[i], B->got_dope,
              B->got_src.low);
    }
    /* a chief deceives out of its clan as a member: A as A11 to B */
    A->vsrc = A11->id;
    got = B->got;
    CHECK(run_cmd(A, CMD_DECEIT, B->id, 0x8888) && A->err == 0, "A: %#x", A->err);
    CHECK(settle(&B->got, got), "B got nothing from A");
    CHECK(l4_same(B->got_src, A11->id) && (B->got_dope & CLAN_DOPE) == L4_IPC_DOPE_DECEITED,
          "B got %#x from %#x", B->got_dope, B->got_src.low);
    tree_down();
    return 0;
}

static int nearest_is(struct member *m, l4_threadid_t dest, int type, l4_threadid_t want)
{
    if (!run_cmd(m, CMD_NEAREST, dest, 0))
        return 0;
    if (m->err != type || !l4_same(m->rid, want)) {
        printf("ktest:   task %u: nearest to %#x is %#x, type %#x (want %#x, %#x)\n", m->task,
               dest.low, m->rid.low, m->err, want.low, type);
        return 0;
    }
    return 1;
}

int test_clan_id_nearest(void)
{
    CHECK(tree_up(), "the tree did not come up");
    const l4_threadid_t nobody = {(100u << L4_ID_TASK_SHIFT) | 1, 0};
    l4_threadid_t n;
    /* the root task */
    CHECK(l4_id_nearest(A1->id, &n) == L4_NC_INNER_CLAN && l4_same(n, A->id), "root: A1");
    CHECK(l4_id_nearest(A11->id, &n) == L4_NC_INNER_CLAN && l4_same(n, A->id), "root: A11");
    CHECK(l4_id_nearest(A->id, &n) == L4_NC_SAME_CLAN && l4_same(n, A->id), "root: A");
    CHECK(l4_id_nearest(L4_SIGMA0_ID, &n) == L4_NC_SAME_CLAN && l4_same(n, L4_SIGMA0_ID),
          "root: sigma0");
    CHECK(l4_id_nearest(nobody, &n) == L4_NC_SAME_CLAN && l4_same(n, nobody), "root: task 100");
    /* A1: its own clan, its chief, and out through its chief */
    CHECK(nearest_is(A1, A11->id, L4_NC_SAME_CLAN, A11->id), "A1: A11");
    CHECK(nearest_is(A1, A->id, L4_NC_SAME_CLAN, A->id), "A1: A");
    CHECK(nearest_is(A1, L4_NIL_ID, L4_NC_SAME_CLAN, A1->id), "A1: myself");
    CHECK(nearest_is(A1, B->id, L4_NC_OUTER_CLAN, A->id), "A1: B");
    CHECK(nearest_is(A1, root_id, L4_NC_OUTER_CLAN, A->id), "A1: root");
    CHECK(nearest_is(A1, L4_SIGMA0_ID, L4_NC_OUTER_CLAN, A->id), "A1: sigma0");
    CHECK(nearest_is(A1, nobody, L4_NC_OUTER_CLAN, A->id), "A1: task 100");
    /* B: into A's clans */
    CHECK(nearest_is(B, A1->id, L4_NC_INNER_CLAN, A->id), "B: A1");
    CHECK(nearest_is(B, A11->id, L4_NC_INNER_CLAN, A->id), "B: A11");
    CHECK(nearest_is(B, A->id, L4_NC_SAME_CLAN, A->id), "B: A");
    CHECK(nearest_is(B, root_id, L4_NC_SAME_CLAN, root_id), "B: root");
    /* A: two levels down, and out */
    CHECK(nearest_is(A, A11->id, L4_NC_INNER_CLAN, A1->id), "A: A11");
    CHECK(nearest_is(A, L4_SIGMA0_ID, L4_NC_OUTER_CLAN, root_id), "A: sigma0");
    /* A11: everything but A1 is outside */
    CHECK(nearest_is(A11, A->id, L4_NC_OUTER_CLAN, A1->id), "A11: A");
    CHECK(nearest_is(A11, B->id, L4_NC_OUTER_CLAN, A1->id), "A11: B");
    tree_down();
    return 0;
}

int test_clan_delete(void)
{
    CHECK(tree_up(), "the tree did not come up");
    l4_threadid_t a = A->id, a1 = A1->id, a11 = A11->id;
    /* deleting A deletes A1, and A1's clan: A11 */
    kill(TASK_A);
    CHECK(state_of(a) == 0xFF && state_of(a1) == 0xFF && state_of(a11) == 0xFF,
          "still there: A %#x A1 %#x A11 %#x", state_of(a), state_of(a1), state_of(a11));
    CHECK(state_of(B->id) != 0xFF, "B went too");
    /* B's message to A1 would go to A, which is gone */
    CHECK(run_cmd(B, CMD_SEND, a1, 0) && B->err == L4_IPC_ENOT_EXISTENT, "B to A1: %#x",
          B->err);
    /* A1's number still belongs to A's: not the root task's to create */
    l4_threadid_t r = l4_task_new(l4_task_id(TASK_A1), 0, 0, 0, L4_NIL_ID);
    CHECK(l4_is_nil(r), "the root task re-created A1");
    l4_threadid_t n;
    CHECK(l4_id_nearest(a1, &n) == L4_NC_INNER_CLAN && l4_task_of(n) == TASK_A,
          "nearest to the old A1: %#x", n.low);
    /* A again, with its clan */
    CHECK(tree_up() && state_of(A11->id) != 0xFF, "the tree did not come back");
    CHECK(A1->id.low != a1.low, "A1 kept its version");
    tree_down();
    return 0;
}

; kernel/fastpath.asm: the IPC fast path (DESIGN D6; seL4's fastpath.c is the model: cheap
; checks, any failing one falls back to the general path in ipc.asm; here they are combined
; into one test with one branch, which also tells a switch of space from IPC within one).
;
; It takes `call` (EBP = 0: closed receive from the destination) and `reply_and_wait`
; (EBP = 1: open receive) with a short register message (EAX = 0) and a never-expiring
; receive timeout, when the destination is already waiting for this sender (TS_WAIT_RECV:
; no timeout, still on its ready list), both are in the same "fast clan" (TCB_FAST_CLAN: the
; chief's task number, for a boot task its own: siblings, or a boot task and a task it
; created; such IPC is never redirected, clan.asm), and the sender has nobody queued to send
; to it and no TLS segment (TCB_FP_BLOCK: desc.asm; a thread with one never waits in
; TS_WAIT_RECV either).
; The switch then does what the general path would, without touching any queue (lazy
; scheduling: the sender stays on its ready list while it waits):
;
;   the sender's registers are pushed (pushad) and its resume point is ipc_resume_user, so
;   any path can complete its receive later; it waits for the destination (call) or anyone;
;   the destination runs: CR3 (if another space), TSS.ESP0, and iretd from its own frame with
;   EAX = 0 (dope), EDX/EBX = the message (already in place), ESI:EDI = the sender's ID,
;   EBP = its own saved EBP.  ECX is undefined after ipc (V2 clobbers it).
;
; The user's DS may be anything (it is not reloaded here): every kernel access below goes
; through SS, which is the kernel's.  tests/kernel/test_fastpath.py pins the instruction
; count from `int 0x30` to the destination's first user instruction.

.equ FP_TCB_INDEX, L4_ID_INDEX_MASK & ((L4_MAX_TASKS << L4_ID_TASK_SHIFT) - 1)

.section .text
; The commit, the same for a switch of space and within one: the sender blocks in its receive
; phase (its registers under its resume point, as any path leaves a waiting thread), and the
; destination is made ready.  EAX = the destination's TCB, ESI = the sender's, EBP = the
; sender's receive descriptor (0 or 1).
.macro FASTPATH_COMMIT
    add esp, 16                         ; the saved EAX, EDI, ESI, ECX
    pushad
    push dword ptr ss:[CPU_RESUME_USER]
    mov ss:[esi + TCB_KSP], esp
    mov dword ptr ss:[esi + TCB_STATE], TS_WAIT_RECV
    mov ss:[esi + TCB_RCV_DESC], ebp    ; its receive: no window, no buffer (a general-path
                                        ; sender reads it: a map message maps nothing)
    dec ebp                             ; call: 0 -> all ones; reply_and_wait: 1 -> 0
    and ebp, eax
    mov ss:[esi + TCB_WAIT_FOR], ebp    ; the destination, or 0 = anyone
    mov dword ptr ss:[eax + TCB_STATE], TS_READY
.endm

gate_ipc:                               ; the call gate for ipc falls into the fast path
    cli                                 ; IF is still the user's: a call gate keeps EFLAGS.  Not
                                        ; popfd (it ends a translated block): TF set raises a
                                        ; #DB here that drops it, an NT set makes an iretd
                                        ; fault, and both are mended in trap.asm; DF is set by
                                        ; the general path
    push dword ptr [esp]                ; EIP, EIP, CS, ESP, SS -> EIP, CS, EFLAGS, ESP, SS
    mov dword ptr [esp + 4], L4_SEL_UCODE
    mov dword ptr [esp + 8], USER_EFLAGS
fastpath_ipc:                           ; int 0x30: user registers untouched
    ; One test, one branch: each check leaves a nonzero value in ECX when it fails and the
    ; values are ORed (as seL4's fastpath_mi_check tests the message length and extra caps in
    ; one comparison): on this emulator a conditional branch ends a translated block, and
    ; every block costs host time (docs/benchmarking.md).  The loads below are safe whatever
    ; the operands are (the TCB address is masked into the TCB area).  EAX, ECX, ESI and
    ; EDI are scratch until the decision; the general path gets them back.
    push ecx
    push esi
    push edi
    push eax
    and ecx, 0x0F                       ; receive timeout never (rcv_exp = 0)
    cmp ebp, 1
    seta ch                             ; receive short: closed (0) or open (1)
    or ecx, eax                         ; send a short register message (EAX = 0)
    mov eax, esi                        ; destination TCB from the thread ID; a task number
    and eax, FP_TCB_INDEX               ;  beyond the TCB area wraps into it, where the ID
    add eax, L4_TCB_AREA                ;  differs (TCB pages not in use read as zeros)
    xor esi, ss:[eax + TCB_ID_LO]       ; the thread exists with exactly this ID
    xor edi, ss:[eax + TCB_ID_HI]
    or ecx, esi
    or ecx, edi
    mov edi, ss:[eax + TCB_STATE]
    xor edi, TS_WAIT_RECV               ; it waits to receive (lazily still on its ready list)
    or ecx, edi
    mov esi, esp
    and esi, 0xFFFFFC00                 ; the sender's TCB
    mov edi, ss:[eax + TCB_FAST_CLAN]   ; one clan: never redirected (clan.asm)
    xor edi, ss:[esi + TCB_FAST_CLAN]
    or ecx, edi
    or ecx, ss:[esi + TCB_FP_BLOCK]     ; nobody waits to send to the sender, no TLS
    mov edi, ss:[eax + TCB_WAIT_FOR]    ; it waits for this sender ...
    test edi, edi
    cmovz edi, esi                      ; ... or for anyone (0)
    xor edi, esi
    or ecx, edi
    mov edi, ss:[eax + TCB_SPACE]       ; the branch also leaves for a destination in this
    xor edi, ss:[CPU_CUR_SPACE]         ;  space (no CR3 write): EDI = all ones if so
    cmp edi, 1
    sbb edi, edi
    or edi, ecx
    jnz fastpath_same_space_or_bail
    ; -- another space: commit, and the destination runs
    FASTPATH_COMMIT
    mov ebp, ss:[eax + TCB_SPACE]
    mov ss:[CPU_CUR_SPACE], ebp
    mov cr3, ebp                        ; (ends a translated block)
fastpath_deliver:                       ; the destination runs: TSS.ESP0, its own frame
    lea ebp, [eax + L4_TCB_SIZE]
    mov ss:[CPU_TSS_ESP0], ebp          ; TSS.ESP0
    lea esp, [eax + TCB_IRET]
    mov ebp, [esp - 24]                 ; its saved EBP (pushad slot)
    mov edi, ss:[esi + TCB_ID_HI]       ; source: the sender
    mov esi, ss:[esi + TCB_ID_LO]
    xor eax, eax                        ; dope: short message, no error
    iretd
fastpath_same_space_or_bail:
    test ecx, ecx
    jnz fastpath_bail
    FASTPATH_COMMIT
    jmp fastpath_deliver
; The general path gets the user's registers as they came.
fastpath_bail:
    pop eax
    pop edi
    pop esi
    pop ecx
    jmp ipc_slow
fastpath_end:

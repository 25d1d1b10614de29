; kernel/fastpath.asm: the IPC fast path (DESIGN D6; seL4's fastpath.c is the model: a straight
; run of cheap checks, any failing one falls back to the general path in ipc.asm).
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

.section .text
gate_ipc:                               ; the call gate for ipc falls into the fast path
    push 2
    popfd
    push dword ptr [esp]                ; EIP, EIP, CS, ESP, SS -> EIP, CS, EFLAGS, ESP, SS
    mov dword ptr [esp + 4], L4_SEL_UCODE
    mov dword ptr [esp + 8], USER_EFLAGS
fastpath_ipc:                           ; int 0x30: user registers untouched
    test eax, eax                       ; send a short register message
    jnz ipc_slow
    cmp ebp, 1                          ; receive short: closed (0) or open (1)
    ja ipc_slow
    test cl, 0x0F                       ; receive timeout never (rcv_exp = 0)
    jnz ipc_slow
    mov eax, esi                        ; destination TCB from the thread ID
    and eax, L4_ID_INDEX_MASK
    cmp eax, L4_MAX_TASKS << L4_ID_TASK_SHIFT
    jae fastpath_bail_eax
    add eax, L4_TCB_AREA
    cmp ss:[eax + TCB_ID_LO], esi       ; the thread exists with exactly this ID
    jne fastpath_bail_eax
    cmp ss:[eax + TCB_ID_HI], edi
    jne fastpath_bail_eax
    cmp dword ptr ss:[eax + TCB_STATE], TS_WAIT_RECV
    jne fastpath_bail_eax
    mov esi, esp
    and esi, 0xFFFFFC00                 ; the sender's TCB
    mov edi, ss:[eax + TCB_FAST_CLAN]   ; one clan: never redirected (clan.asm)
    cmp edi, ss:[esi + TCB_FAST_CLAN]
    jne fastpath_bail
    cmp ss:[eax + TCB_WAIT_FOR], esi    ; it waits for this sender ...
    je fastpath_accepted
    cmp dword ptr ss:[eax + TCB_WAIT_FOR], 0      ; ... or for anyone
    jne fastpath_bail
fastpath_accepted:
    cmp dword ptr ss:[esi + TCB_FP_BLOCK], 0  ; nobody waits to send to the sender, no TLS
    jne fastpath_bail
    ; -- commit: the sender blocks in its receive phase
    pushad
    push dword ptr ss:[CPU_RESUME_USER]
    mov ss:[esi + TCB_KSP], esp
    mov dword ptr ss:[esi + TCB_STATE], TS_WAIT_RECV
    mov ss:[esi + TCB_RCV_DESC], ebp    ; its receive: no window, no buffer (a general-path
                                        ; sender reads it: a map message maps nothing)
    dec ebp                             ; call: 0 -> all ones; reply_and_wait: 1 -> 0
    and ebp, eax
    mov ss:[esi + TCB_WAIT_FOR], ebp    ; the destination, or 0 = anyone
    ; -- the destination runs
    mov dword ptr ss:[eax + TCB_STATE], TS_READY
    mov ebp, ss:[eax + TCB_SPACE]
    cmp ebp, ss:[CPU_CUR_SPACE]
    je fastpath_same_space
    mov cr3, ebp
    mov ss:[CPU_CUR_SPACE], ebp
fastpath_same_space:
    lea ebp, [eax + L4_TCB_SIZE]
    mov ss:[CPU_TSS_ESP0], ebp          ; TSS.ESP0
    lea esp, [eax + TCB_IRET]
    mov ebp, [esp - 24]                 ; its saved EBP (pushad slot)
    mov edi, ss:[esi + TCB_ID_HI]       ; source: the sender
    mov esi, ss:[esi + TCB_ID_LO]
    xor eax, eax                        ; dope: short message, no error
    iretd
; The general path gets the user's registers as they came: EAX was 0, ESI:EDI is the
; destination's ID (it exists), ECX and EBP were not touched.
fastpath_bail:
    mov esi, ss:[eax + TCB_ID_LO]
    mov edi, ss:[eax + TCB_ID_HI]
fastpath_bail_eax:
    xor eax, eax
    jmp ipc_slow
fastpath_end:

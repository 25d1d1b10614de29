; kernel/fastpath.asm: the IPC fast path (DESIGN D6; seL4's fastpath.c is the model: a straight
; run of cheap checks, any failing one falls back to the general path in ipc.asm).
;
; It takes `call` (EBP = 0: closed receive from the destination) and `reply_and_wait`
; (EBP = 1: open receive) with a short register message (EAX = 0) and a never-expiring
; receive timeout, when the destination is already waiting for this sender (TS_WAIT_RECV:
; no timeout, still on its ready list), and the sender has nobody queued to send to it and no
; TLS segment (TCB_FP_BLOCK: desc.asm; a thread with one never waits in TS_WAIT_RECV either).
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
    mov ecx, esi                        ; destination TCB from the thread ID
    and ecx, L4_ID_INDEX_MASK
    cmp ecx, L4_MAX_TASKS << L4_ID_TASK_SHIFT
    jae ipc_slow
    add ecx, L4_TCB_AREA
    cmp ss:[ecx + TCB_ID_LO], esi       ; the thread exists with exactly this ID
    jne ipc_slow
    cmp ss:[ecx + TCB_ID_HI], edi
    jne ipc_slow
    cmp dword ptr ss:[ecx + TCB_STATE], TS_WAIT_RECV
    jne ipc_slow
    mov eax, esp
    and eax, 0xFFFFFC00                 ; the sender's TCB
    cmp ss:[ecx + TCB_WAIT_FOR], eax    ; it waits for this sender ...
    je fastpath_accepted
    cmp dword ptr ss:[ecx + TCB_WAIT_FOR], 0      ; ... or for anyone
    jne fastpath_refused
fastpath_accepted:
    cmp dword ptr ss:[eax + TCB_FP_BLOCK], 0  ; nobody waits to send to the sender, no TLS
    jne fastpath_refused
    ; -- commit: the sender blocks in its receive phase
    pushad
    push dword ptr ss:[resume_user_ptr]
    mov ss:[eax + TCB_KSP], esp
    mov dword ptr ss:[eax + TCB_STATE], TS_WAIT_RECV
    dec ebp                             ; call: 0 -> all ones; reply_and_wait: 1 -> 0
    and ebp, ecx
    mov ss:[eax + TCB_WAIT_FOR], ebp    ; the destination, or 0 = anyone
    ; -- the destination runs
    mov dword ptr ss:[ecx + TCB_STATE], TS_READY
    mov ebp, ss:[ecx + TCB_SPACE]
    cmp ebp, ss:[cur_space]
    je fastpath_same_space
    mov cr3, ebp
    mov ss:[cur_space], ebp
fastpath_same_space:
    lea ebp, [ecx + L4_TCB_SIZE]
    mov ss:[tss + 4], ebp               ; TSS.ESP0
    lea esp, [ecx + TCB_IRET]
    mov ebp, [esp - 24]                 ; its saved EBP (pushad slot)
    mov esi, ss:[eax + TCB_ID_LO]       ; source: the sender
    mov edi, ss:[eax + TCB_ID_HI]
    xor eax, eax                        ; dope: short message, no error
    iretd
fastpath_end:
fastpath_refused:                       ; after EAX (0 at entry) was used for the sender's TCB
    xor eax, eax
    jmp ipc_slow

.section .data
.align 4
resume_user_ptr:
    .long ipc_resume_user

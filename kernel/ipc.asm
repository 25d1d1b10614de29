; kernel/ipc.asm: IPC, general path, and page faults as IPC.
;
; ipc_do is the one engine for every IPC the fast path does not take: system calls
; (ipc_slow) and the kernel's page-fault call to a pager (exc_pf).  It works on the operands in
; the current TCB (TCB_SND_DESC ... TCB_DEST_HI) and leaves its results in TCB_RES_*; the
; caller copies them to the user registers.
;
; Long messages (a send descriptor that is a buffer address) take the same rendezvous in
; longipc.asm (lipc_send, lipc_rcv_take), whose engine copies them.
; Send phase: if the destination is receiving from us the message is transferred at once
; (ipc_transfer, which also installs a flexpage for a map message) and the destination is
; woken; otherwise we queue on its send queue (FIFO) until a receiver takes the message, the
; send timeout expires, or the operation is cancelled.
; Receive phase: a queued sender (the expected one, or the first for an open wait) is taken
; at once; otherwise we block.  A blocked receiver does not keep its kernel frames: its
; resume point is its continuation (TCB_CONT_ESP/EIP: ipc_resume_user for a system call,
; pf_resume for a page fault), so whoever completes the receive - this path, the fast path,
; a timeout, a cancel - only fills in the results and makes it ready.
; The send/receive transition needs no time (V2): when a receiver takes a queued caller's
; message, the caller is put straight into its receive state, so a reply with send timeout
; 0 always finds it waiting.

.section .text
; ipc_slow: the general path of the ipc system call (from the fast path's checks).
ipc_slow:
    pushad
    cld
    mov cx, L4_SEL_UDATA
    mov ds, cx
    mov es, cx
    mov ebp, esp
    and ebp, 0xFFFFFC00
    mov eax, [esp + R_EAX]
    mov [ebp + TCB_SND_DESC], eax
    mov eax, [esp + R_EBP]
    mov [ebp + TCB_RCV_DESC], eax
    mov eax, [esp + R_ECX]
    mov [ebp + TCB_TIMEOUT], eax
    mov eax, [esp + R_EDX]
    mov [ebp + TCB_MSG0], eax
    mov eax, [esp + R_EBX]
    mov [ebp + TCB_MSG1], eax
    mov eax, [esp + R_ESI]
    mov [ebp + TCB_DEST_LO], eax
    mov eax, [esp + R_EDI]
    mov [ebp + TCB_DEST_HI], eax
    mov [ebp + TCB_CONT_ESP], esp
    mov dword ptr [ebp + TCB_CONT_EIP], ipc_resume_user
    mov eax, [ebp + TCB_RCV_DEFAULT]    ; TS_WAIT_RECV, or _DQ with TLS (desc.asm tls_set)
    mov [ebp + TCB_RCV_STATE], eax
    call ipc_do
; ipc_resume_user: return from ipc to user mode; esp = the register frame.  Also the resume
; point of a receiver blocked by the general path or the fast path.
ipc_resume_user:
    mov ebp, esp
    and ebp, 0xFFFFFC00
    mov eax, [ebp + TCB_RES_DOPE]
    mov [esp + R_EAX], eax
    mov eax, [ebp + TCB_RES_MSG0]
    mov [esp + R_EDX], eax
    mov eax, [ebp + TCB_RES_MSG1]
    mov [esp + R_EBX], eax
    mov eax, [ebp + TCB_RES_SRC_LO]
    mov [esp + R_ESI], eax
    mov eax, [ebp + TCB_RES_SRC_HI]
    mov [esp + R_EDI], eax
    popad
    iretd

; ipc_do: ebp = current TCB with its operands set.  Returns with TCB_RES_* set (or never, when
; it blocks in the receive phase: then the continuation returns to user mode).
; Clobbers eax, ebx, ecx, edx, esi, edi.
ipc_do:
    mov dword ptr [ebp + TCB_WOKEN], 0
    mov dword ptr [ebp + TCB_RES_DOPE], 0
    mov eax, [ebp + TCB_SND_DESC]
    cmp eax, L4_IPC_NIL_DESCRIPTOR
    je ipc_rcv_phase
    cmp eax, 3                          ; 0/1 short, 2/3 short map (bit 0: deceit)
    ja ipc_long_send
ipc_short_send:
    mov dword ptr [ebp + TCB_CLAN], 0
ipc_snd_route:                          ; (also long sends: longipc.asm)
    mov eax, [ebp + TCB_DEST_LO]
    mov edx, [ebp + TCB_DEST_HI]
    call tcb_lookup
    test eax, eax
    jz ipc_snd_clan                     ; (clan.asm) no such thread: maybe via a chief
    mov esi, eax                        ; destination
    mov eax, [esi + TCB_ID_HI]          ; the same chief (and nest): the same clan
    cmp eax, [ebp + TCB_ID_HI]
    jne ipc_snd_clan_dest               ; (clan.asm)
    test byte ptr [ebp + TCB_SND_DESC], L4_IPC_DECEIT
    jnz ipc_snd_clan_dest
ipc_snd_routed:                         ; esi = the receiver (the destination or a chief)
    cmp dword ptr [ebp + TCB_SND_DESC], 3
    ja ipc_snd_routed_long              ; a long message, or an exception's (out of line)
ipc_snd_routed_short:
    call receiving_from                 ; is esi waiting for ebp?
    jnc ipc_snd_block
    mov edi, esi
    mov esi, ebp
    call ipc_transfer                   ; eax = 0 or the sender's error
    mov esi, edi
    push eax
    call thread_wake
    pop eax
    test eax, eax
    jnz ipc_result
    mov [ebp + TCB_WOKEN], esi
    jmp ipc_rcv_phase
ipc_snd_block:
    mov eax, [ebp + TCB_TIMEOUT]
    shr eax, L4_IPC_SND_EXP_SHIFT
    and eax, 0x0F
    mov edx, [ebp + TCB_TIMEOUT]
    shr edx, L4_IPC_SND_MAN_SHIFT
    and edx, 0xFF
    call timeout_ticks                  ; eax = ticks, 0 = zero, -1 = never
    test eax, eax
    jz ipc_snd_timeout
    mov [ebp + TCB_PARTNER], esi
    mov dword ptr [ebp + TCB_STATE], TS_WAIT_SEND
    mov dword ptr [ebp + TCB_IPC_STATUS], IS_PENDING
    cmp eax, -1
    je ipc_snd_queue
    push esi
    mov esi, ebp
    call timeout_add
    pop esi
ipc_snd_queue:
    call sendq_append                   ; ebp onto esi's queue
    call sched_block
    mov eax, [ebp + TCB_IPC_STATUS]
    cmp eax, IS_RECEIVE
    je ipc_rcv_phase
    cmp eax, IS_DONE
    je ipc_ret
    jmp ipc_result                      ; an error dope
ipc_long_send:                          ; a memory message, an exception message or reply
    jmp lipc_send                       ; (longipc.asm)
ipc_snd_routed_long:                    ; a memory message goes on in longipc.asm; an
    cmp dword ptr [ebp + TCB_SND_DESC], L4_USER_LIMIT   ; exception message or reply here
    jae ipc_snd_routed_short
    jmp lps_routed
ipc_snd_not_existent:
    mov eax, L4_IPC_ENOT_EXISTENT
    jmp ipc_result
ipc_snd_timeout:
    mov eax, L4_IPC_SETIMEOUT
    jmp ipc_result

ipc_rcv_phase:
    mov eax, [ebp + TCB_RCV_DESC]
    cmp eax, L4_IPC_NIL_DESCRIPTOR
    je ipc_ret                          ; send only: dope 0
    test al, L4_IPC_OPEN_IPC
    jnz ipc_rcv_open
    mov eax, [ebp + TCB_DEST_LO]
    mov edx, [ebp + TCB_DEST_HI]
    mov ecx, eax
    or ecx, edx
    jz ipc_rcv_sleep                    ; from the nil ID: nobody can send, just time out
    call tcb_lookup
    test eax, eax
    jz ipc_rcv_not_existent
    mov esi, eax                        ; the expected sender
    cmp dword ptr [esi + TCB_STATE], TS_WAIT_SEND
    jne ipc_rcv_deceivers               ; (clan.asm)
    cmp [esi + TCB_PARTNER], ebp
    jne ipc_rcv_deceivers
    jmp ipc_rcv_take
ipc_rcv_sleep:
    mov esi, WAIT_NOBODY
    jmp ipc_rcv_block
ipc_rcv_open:
    xor esi, esi
    mov eax, [ebp + TCB_SENDQ]
    test eax, eax
    jz ipc_rcv_block
    mov esi, eax
ipc_rcv_take:                           ; esi = a sender queued on us
    cmp dword ptr [esi + TCB_SND_DESC], 3
    ja lipc_rcv_take                    ; a long message (longipc.asm)
ipc_rcv_take_short:
    mov edi, ebp
    call ipc_transfer
    push eax
    call sendq_remove                   ; esi off ebp's queue
    call timeout_remove
    pop eax
    call ipc_after_send
    jmp ipc_ret
ipc_rcv_block:                          ; esi = expected sender, 0 = anyone
    mov eax, [ebp + TCB_TIMEOUT]
    and eax, 0x0F
    mov edx, [ebp + TCB_TIMEOUT]
    shr edx, L4_IPC_RCV_MAN_SHIFT
    call timeout_ticks
    test eax, eax
    jz ipc_rcv_timeout
    mov [ebp + TCB_WAIT_FOR], esi
    mov ecx, [ebp + TCB_RCV_STATE]
    cmp eax, -1
    je ipc_rcv_state
    cmp ecx, TS_WAIT_RECV
    jne ipc_rcv_timed
    mov ecx, TS_WAIT_RECV_TO            ; not for the fast path: its timeout must be removed
ipc_rcv_timed:
    mov esi, ebp
    call timeout_add
ipc_rcv_state:
    mov [ebp + TCB_STATE], ecx
    ; Leave through the continuation: this frame is not needed any more.
    mov esp, [ebp + TCB_CONT_ESP]
    push dword ptr [ebp + TCB_CONT_EIP]
    mov [ebp + TCB_KSP], esp
    mov eax, [ebp + TCB_WOKEN]          ; the receiver this IPC woke runs next
    test eax, eax
    jz ipc_rcv_pick
    cmp dword ptr [eax + TCB_STATE], TS_READY
    je resume_tcb
ipc_rcv_pick:
    call sched_pick
    jmp resume_tcb
ipc_rcv_not_existent:                   ; no such thread: an interrupt's ID? (irq.asm)
    mov eax, [ebp + TCB_DEST_LO]
    mov edx, [ebp + TCB_DEST_HI]
    call irq_attach
    jc ipc_rcv_ne
    test esi, esi
    jnz ipc_rcv_block                   ; wait for the interrupt
    jmp ipc_ret                         ; a pending one was delivered
ipc_rcv_ne:
    mov eax, L4_IPC_ENOT_EXISTENT
    jmp ipc_result
ipc_rcv_timeout:
    mov eax, L4_IPC_RETIMEOUT
ipc_result:
    mov [ebp + TCB_RES_DOPE], eax
ipc_ret:
    ret

; receiving_from: esi waits for a message from ebp -> CF set.  Clobbers ecx.
receiving_from:
    mov ecx, [esi + TCB_STATE]
    cmp ecx, TS_WAIT_RECV
    jb rf_no
    cmp ecx, TS_WAIT_PF
    ja rf_no
    mov ecx, [esi + TCB_WAIT_FOR]
    test ecx, ecx
    jz rf_yes
    cmp ecx, ebp
    jne rf_deceit                       ; (clan.asm)
rf_yes:
    stc
    ret
rf_no:
    clc
    ret

; ipc_transfer: esi = sender, edi = receiver (receiving).  Copies the message into the
; receiver's results and installs a flexpage if it is a map message and the receiver has a
; receive window.  eax = 0, or the sender's error (the receiver gets the matching one).
; Preserves ebx, esi, edi, ebp.
; XFER_REGISTERS: the part every transfer shares (this one and longipc.asm's lipc_transfer):
; esi's register words and ID become edi's results, with a dope of 0.  Clobbers eax.
; PF_IPC_TO_PAGER: ebp's IPC operands become a page-fault call to its pager (the words and
; the timeout are the caller's): a short send, the whole space as the receive window.  Also
; longipc.asm's faults during a copy.  Clobbers eax.
.macro PF_IPC_TO_PAGER
    mov dword ptr [ebp + TCB_SND_DESC], L4_IPC_SHORT_MSG
    mov dword ptr [ebp + TCB_RCV_DESC], PF_RCV_WINDOW
    mov eax, [ebp + TCB_PAGER_LO]
    mov [ebp + TCB_DEST_LO], eax
    mov eax, [ebp + TCB_PAGER_HI]
    mov [ebp + TCB_DEST_HI], eax
.endm

.macro XFER_REGISTERS
    mov eax, [esi + TCB_MSG0]
    mov [edi + TCB_RES_MSG0], eax
    mov eax, [esi + TCB_MSG1]
    mov [edi + TCB_RES_MSG1], eax
    mov eax, [esi + TCB_ID_LO]
    mov [edi + TCB_RES_SRC_LO], eax
    mov eax, [esi + TCB_ID_HI]
    mov [edi + TCB_RES_SRC_HI], eax
    mov dword ptr [edi + TCB_RES_DOPE], 0
.endm

ipc_transfer:
    XFER_REGISTERS
    cmp dword ptr [esi + TCB_CLAN], 0
    jne xfer_clan                       ; (clan.asm) redirected or deceiving
xfer_clan_done:
    xor eax, eax
    test byte ptr [esi + TCB_SND_DESC], 2
    jz xfer_done
    mov ecx, [edi + TCB_RCV_DESC]
    test cl, L4_IPC_RMAP
    jz xfer_no_window
    push ebx
    mov eax, ecx                        ; receive window
    mov edx, [esi + TCB_MSG0]           ; snd_base
    mov ecx, [esi + TCB_MSG1]           ; send fpage
    call map_fpage                      ; eax = 0 ok, 1 out of memory, 2 not a memory fpage
    pop ebx
    test eax, eax
    jnz xfer_map_failed
    or dword ptr [edi + TCB_RES_DOPE], L4_IPC_DOPE_FPAGE_RECEIVED
    xor eax, eax
xfer_done:
    ret
; The rare cases stay off the map path (the page-fault round trip is measured): an exception
; message (EXC_SND_DESC, dword 1 = EXC_MSG1, which map_fpage refuses as too small) and an I/O
; flexpage (L4_IOFPAGE_MARK and up, which map_fpage finds outside user space or too small).
xfer_no_window:                         ; no window: the words arrive, nothing is mapped
    cmp dword ptr [esi + TCB_SND_DESC], EXC_SND_DESC
    je exc_deliver_frame                ; (trap.asm)
    ret
xfer_map_failed:
    cmp eax, 2
    je xfer_special
    mov dword ptr [edi + TCB_RES_DOPE], L4_IPC_REMAPFAILED
    mov eax, L4_IPC_SEMAPFAILED
    ret
xfer_special:
    xor eax, eax
    cmp dword ptr [esi + TCB_SND_DESC], EXC_SND_DESC
    je exc_deliver_frame
    cmp dword ptr [esi + TCB_MSG1], L4_IOFPAGE_MARK
    jb xfer_done                        ; an fpage with nothing to map
    mov ecx, [esi + TCB_MSG1]
    call io_map                         ; (space.asm)
    test eax, eax
    jnz xfer_map_failed
    or dword ptr [edi + TCB_RES_DOPE], L4_IPC_DOPE_FPAGE_RECEIVED
    ret

; ipc_after_send: esi = a sender whose message the current thread (ebp) just took, eax = 0 or
; its error.  It is off the send queue and has no timeout.  Moves it on: done (send only),
; straight into its receive state (the usual call), or ready to run its receive phase itself.
ipc_after_send:
    test eax, eax
    jnz ias_status
    cmp dword ptr [esi + TCB_RCV_DESC], L4_IPC_NIL_DESCRIPTOR
    jne ias_receive
    mov dword ptr [esi + TCB_RES_DOPE], 0
    mov eax, IS_DONE
ias_status:
    mov [esi + TCB_IPC_STATUS], eax
    jmp thread_wake
ias_receive:
    ; Whom does it wait for?  Anything unusual (a sender already queued for it, a zero
    ; timeout, an unknown partner) is left to its own receive phase.
    mov eax, [esi + TCB_RCV_DESC]
    test al, L4_IPC_OPEN_IPC
    jnz ias_open
    mov eax, [esi + TCB_DEST_LO]
    mov edx, [esi + TCB_DEST_HI]
    cmp eax, [ebp + TCB_ID_LO]          ; the usual case: a call to us
    jne ias_clan                        ; (clan.asm) or one redirected to us
    cmp edx, [ebp + TCB_ID_HI]
    jne ias_clan
    mov edx, ebp
    jmp ias_wait
ias_open:
    cmp dword ptr [esi + TCB_SENDQ], 0
    jne ias_self
    xor edx, edx
ias_wait:                               ; edx = expected sender (0 = any)
    push edx
    mov eax, [esi + TCB_TIMEOUT]
    and eax, 0x0F
    mov edx, [esi + TCB_TIMEOUT]
    shr edx, L4_IPC_RCV_MAN_SHIFT
    call timeout_ticks
    pop edx
    test eax, eax
    jz ias_self
    mov [esi + TCB_WAIT_FOR], edx
    mov ecx, [esi + TCB_RCV_STATE]
    cmp eax, -1
    je ias_state
    cmp ecx, TS_WAIT_RECV
    jne ias_timed
    mov ecx, TS_WAIT_RECV_TO
ias_timed:
    call timeout_add                    ; esi, eax
    jmp ias_set
ias_state:
    cmp ecx, TS_WAIT_RECV               ; off its ready list: not for the fast path
    jne ias_set
    cmp dword ptr [esi + TCB_QUEUED], 0
    jne ias_set
    mov ecx, TS_WAIT_RECV_DQ
ias_set:
    mov [esi + TCB_STATE], ecx
    mov eax, [esi + TCB_CONT_ESP]       ; it resumes at its continuation
    sub eax, 4
    mov ecx, [esi + TCB_CONT_EIP]
    mov [eax], ecx
    mov [esi + TCB_KSP], eax
    ret
ias_self:
    mov dword ptr [esi + TCB_IPC_STATUS], IS_RECEIVE
    jmp thread_wake

; -- page faults ----------------------------------------------------------------------------
; exc_pf: #PF.  From user mode below L4_USER_LIMIT: an IPC call to the thread's pager with
; dword 0 = fault address (bit 1 set for a write) and dword 1 = EIP, receiving a map into the
; whole address space; then the instruction is retried.  No pager, or a pager that does not
; exist: the thread is killed.  From kernel mode: a fault in a user-memory access (kdebug)
; goes to its fixup, anything else is a kernel bug.
exc_pf:
    pushad
    cld
    mov cx, L4_SEL_UDATA
    mov ds, cx
    mov es, cx
    test byte ptr [esp + 40], 3         ; CS: pushad, error code, EIP, CS
    jz pf_kernel
    mov eax, cr2
    cmp eax, L4_USER_LIMIT
    jae pf_kill
    mov ebp, esp
    and ebp, 0xFFFFFC00
    mov ecx, [ebp + TCB_PAGER_LO]
    or ecx, [ebp + TCB_PAGER_HI]
    jz pf_kill
    mov edx, [esp + 32]                 ; error code
    and edx, L4_PF_WRITE
    and eax, 0xFFFFFFFC
    or eax, edx
    mov [ebp + TCB_MSG0], eax
    mov eax, [esp + 36]                 ; EIP
    mov [ebp + TCB_MSG1], eax
    mov dword ptr [ebp + TCB_TIMEOUT], L4_IPC_NEVER
    PF_IPC_TO_PAGER
    mov [ebp + TCB_CONT_ESP], esp
    mov dword ptr [ebp + TCB_CONT_EIP], pf_resume
    mov dword ptr [ebp + TCB_RCV_STATE], TS_WAIT_PF
    call ipc_do
pf_resume:                              ; esp = the register frame (error code above it)
    mov ebp, esp
    and ebp, 0xFFFFFC00
    mov eax, [ebp + TCB_RES_DOPE]
    and eax, L4_IPC_ERROR_MASK
    cmp eax, L4_IPC_ENOT_EXISTENT
    je pf_kill_nopager
    popad
    add esp, 4
    iretd
pf_kill_nopager:
pf_kill:
    mov eax, 14
    mov edx, [esp + 32]                 ; error code
    mov ecx, [esp + 36]                 ; EIP
    jmp thread_kill_exc
pf_kernel:
    mov eax, [uaccess_fixup]
    test eax, eax
    jz pf_kernel_bug
    mov dword ptr [uaccess_fixup], 0
    mov [esp + 36], eax                 ; resume at the fixup
    popad
    add esp, 4
    iretd
pf_kernel_bug:
    mov eax, 14
    mov edx, [esp + 32]
    mov ecx, [esp + 36]
    jmp kernel_exception

; kernel/longipc.asm: long IPC - memory messages, indirect strings, message cut, page faults
; during the copy (docs/abi.md "Long messages").
;
; A send descriptor above 3 comes here from ipc_do (ipc.asm: ipc_long_send); a receiver that
; takes a queued long sender comes here from ipc_rcv_take.  The semantics follow the L4 x86 V2
; reference manual as L4Ka Hazelnut implements it (l4ka/hazelnut kernel/src/ipc.c,
; extended_transfer; the buffer is its memmsg_t, the l4sys V2 l4_msgdope_t/l4_strdope_t):
;   - buffer: +0 rcv_fpage, +4 size dope, +8 send dope, +12 dwords[]; dwords 0 and 1 travel
;     in EDX/EBX, dwords 2.. are copied from the sender's buffer to the receiver's; string
;     dopes {snd_size, snd_str, rcv_size, rcv_str} follow the dword area of each buffer (at
;     dwords[size_dope.dwords]);
;   - a long send with at most 2 dwords and no strings is a short message;
;   - the receiver's size dope limits the dwords (more: cut, the rest is not copied) and the
;     strings; string i goes to receive string i, at most rcv_size bytes (more: cut); the
;     receiver's dope i then says snd_size = bytes received, snd_str = rcv_str;
;   - the result dope counts the dwords and strings received; a cut is REMSGCUT for the
;     receiver and SEMSGCUT for the sender, with what was copied before it delivered;
;   - a map message (bit 1) maps the register pair (dword 0 = send base, dword 1 = fpage)
;     into the receiver's window: EBP's fpage (bit 1 set), or its buffer's rcv_fpage; more
;     pairs follow in dwords 2-3, 4-5, ... up to an fpage 0 (as Fiasco's V2 long IPC).
;
; The copy goes through the kernel's physical window: each user address is translated by
; walking that space's page tables (user bit, and the write bit for the receiver), so no CR3
; switch is needed and kernel memory (>= L4_USER_LIMIT) or frames outside the window are
; never touched: such an address cuts the message.  A page that is not mapped (or not
; writable for the receiver) is a page fault of that party: its pager gets an ordinary
; page-fault IPC from the faulting thread (for the receiver's space the sender's snd_pfault
; timeout applies, for the sender's space the receiver's rcv_pfault: V2 reference manual,
; error names of l4sys ipc.h), and the copy starts again once the pager has answered.  When
; the faulting party is not the thread running the transfer, the kernel "tunnels" the fault:
; that party runs the page-fault IPC on its own kernel stack (lx_tunnel) and then hands the
; CPU back.  While a fault is resolved both partners are locked (TS_LOCKED): nobody can send
; to them, take their message, or time them out; a deleted partner aborts the transfer.
;
; The engine's scratch state (lx_*) lives in globals: a stage runs without blocking, and is
; restarted from its beginning after every fault.

.equ LX_FAULT, 1                    ; lx_xlate: a user address that is not mapped (a pager can help)
.equ LX_BAD, 2                      ; ... an address that can never be copied (kernel, no window)
.equ LX_GONE, 1                     ; TCB_LK_RESULT: the partner was deleted
.equ LX_WAITING, 3                  ; TCB_LK_RESULT while the tunnel runs
.equ LX_STRINGS_MASK, 0x1F
.equ LX_PF_MANTISSAS, 0x01010000   ; snd_man = rcv_man = 1 (L4_IPC_SND_MAN_SHIFT, L4_IPC_RCV_MAN_SHIFT)
.equ LX_FR_EBP, TCB_FRAME + R_EBP   ; a blocked receiver's user EBP: its receive descriptor
.equ LX_RCV_PF_ZERO, 0xF00         ; a timeout word with rcv_pfault 15 (zero), all else never
; lipc_transfer's frame (esp-relative, below the saved registers)
.equ LXF_S, 0
.equ LXF_R, 4
.equ LXF_RDESC, 8
.equ LXF_RTO, 12
.equ LXF_DOPE, 16
.equ LXF_SID, 20
.equ LXF_RID, 24
.equ LXF_FWORD, 28
.equ LXF_FSIDE, 32
.equ LXF_SERR, 36
.equ LXF_RERR, 40
.equ LXF_LAST, 44                   ; the last fault resolved: fault word | side
.equ LXF_WINDOW, 48                 ; a map message's receive window (0: none)
.equ LXF_SIZE, 52

.section .text
; lipc_send: from ipc_do (ipc_long_send); eax = the send descriptor (> 3), ebp = the sender.
; The exception path's own message and a handler's register-frame reply to a thread in its
; exception go to exc_send_check (trap.asm) as before; every other long send meets its
; receiver like a short one (ipc_snd_block queues it) and is copied by lipc_transfer.
lipc_send:
    cmp eax, EXC_SND_DESC
    je lps_exc
    mov eax, [ebp + TCB_DEST_LO]
    mov edx, [ebp + TCB_DEST_HI]
    call tcb_lookup
    test eax, eax
    jz ipc_snd_not_existent
    mov esi, eax
    cmp dword ptr [esi + TCB_STATE], TS_WAIT_PF
    jne lps_long
    mov ecx, exc_resume
    cmp [esi + TCB_CONT_EIP], ecx
    jne lps_long
    cmp [esi + TCB_WAIT_FOR], ebp
    jne lps_long
    mov edi, esi                        ; the thread in its exception
lps_exc:                                ; an exception message or the reply to one
    mov eax, [ebp + TCB_SND_DESC]
    call exc_send_check
    jnc ipc_short_send
    mov eax, L4_IPC_SEMSGCUT
    jmp ipc_result
lps_long:
    cmp dword ptr [ebp + TCB_SND_DESC], L4_USER_LIMIT
    jae lps_cut                         ; a buffer in kernel memory: never looked at
    mov dword ptr [ebp + TCB_CLAN], 0   ; routed like a short send: clans and chiefs
    jmp ipc_snd_route                   ; (ipc.asm, clan.asm), then on at lps_routed
lps_routed:                             ; esi = the receiver (the destination or a chief)
    inc dword ptr [lx_count]
    call receiving_from
    jnc ipc_snd_block                   ; queue (the receiver takes it: lipc_rcv_take)
    mov edi, esi
    mov esi, ebp
    call lipc_transfer                  ; eax = the sender's error, edx = 1: receiver gone
    mov esi, edi
    test edx, edx
    jnz ipc_result
    push eax
    call thread_wake
    pop eax
    test eax, eax
    jnz ipc_result
    mov [ebp + TCB_WOKEN], esi
    jmp ipc_rcv_phase
lps_cut:
    mov eax, L4_IPC_SEMSGCUT
    jmp ipc_result

; lipc_rcv_take: from ipc_rcv_take; ebp = the receiver (current), esi = a long sender queued
; on it.  The exception path's message stays a short one.
lipc_rcv_take:
    cmp dword ptr [esi + TCB_SND_DESC], EXC_SND_DESC
    je ipc_rcv_take_short
    call sendq_remove                   ; first: it may be locked while the copy faults
    call timeout_remove
    mov edi, ebp
    call lipc_transfer
    test edx, edx
    jnz ipc_ret                         ; the sender was deleted: our dope says aborted
    call ipc_after_send
    jmp ipc_ret

; lipc_transfer: esi = sender (its send descriptor > 3, a user address), edi = receiver,
; ebp = the current thread (one of them).  Fills the receiver's TCB_RES_* (dope with dwords,
; strings, fpage bit, error), copies the message, may block while pagers resolve faults.
; eax = 0 or the sender's error; edx = 1 when the partner of the current thread was deleted
; meanwhile (do not wake or move it on).  Preserves esi, edi, ebp.
lipc_transfer:
    XFER_REGISTERS                      ; (ipc.asm)
    cmp dword ptr [esi + TCB_CLAN], 0
    je lt_clan_done
    call clan_results                   ; (clan.asm) redirected or deceiving
lt_clan_done:
    push ebx
    sub esp, LXF_SIZE
    mov [esp + LXF_S], esi
    mov [esp + LXF_R], edi
    mov eax, [esi + TCB_ID_LO]
    mov [esp + LXF_SID], eax
    mov eax, [edi + TCB_ID_LO]
    mov [esp + LXF_RID], eax
    xor eax, eax
    mov [esp + LXF_DOPE], eax
    mov [esp + LXF_SERR], eax
    mov [esp + LXF_RERR], eax
    mov dword ptr [esp + LXF_LAST], 3   ; (no fault word has bits 0 and 1 set alike)
    mov [esp + LXF_WINDOW], eax
    ; the receiver's descriptor and timeout: in its TCB when it is the current thread or
    ; waits for a pager (kernel IPC); else its descriptor is its user EBP (the fast path
    ; does not store it in the TCB), and its timeout word is in the TCB only if it came
    ; through the general path - certain for a buffer or a window (EBP > 1), which the fast
    ; path does not take.  A short receive does not wait for faults in the sender's space
    ; (rcv_pfault taken as zero): it has no buffer, only the sender's header is read.
    mov eax, [edi + TCB_RCV_DESC]
    mov edx, [edi + TCB_TIMEOUT]
    cmp edi, ebp
    je lt_rparams
    cmp dword ptr [edi + TCB_STATE], TS_WAIT_PF
    je lt_rparams
    mov eax, [edi + LX_FR_EBP]
    cmp eax, 1
    ja lt_rparams
    mov edx, LX_RCV_PF_ZERO
lt_rparams:
    mov [esp + LXF_RDESC], eax
    mov [esp + LXF_RTO], edx
    test byte ptr [esi + TCB_SND_DESC], 2
    jz lt_long
; -- the map part: the register pair into the receiver's window
lt_map:
    mov eax, [esp + LXF_RDESC]
    cmp eax, L4_IPC_NIL_DESCRIPTOR
    je lt_long
    test al, L4_IPC_RMAP
    jnz lt_do_map                       ; the window is in the descriptor
    and eax, 0xFFFFFFFC
    jz lt_long                          ; short receive without a window: nothing mapped
    mov edx, [edi + TCB_SPACE]
    mov ebx, PTE_P | PTE_U
    call lx_xlate                       ; the buffer's rcv_fpage
    jnc lt_window
    cmp eax, LX_BAD
    je lt_bad
    mov eax, [esp + LXF_RDESC]
    and eax, 0xFFFFFFFC
    mov dword ptr [esp + LXF_FSIDE], 1
    jmp lt_fault_at
lt_window:
    mov eax, [eax]
    test eax, 0xFFFFFFFC
    jz lt_long                          ; no receive fpage
    and eax, 0xFFFFFFFC
    or eax, L4_IPC_RMAP
lt_do_map:
    mov [esp + LXF_WINDOW], eax
    mov edx, [esi + TCB_MSG0]
    mov ecx, [esi + TCB_MSG1]
    call map_fpage                      ; 0 ok, 1 out of memory, 2 not a memory fpage
    test eax, eax
    jz lt_mapped
    cmp eax, 1
    je lt_map_failed
    mov ecx, [esi + TCB_MSG1]
    cmp ecx, L4_IOFPAGE_MARK
    jb lt_long                          ; nothing to map
    call io_map
    test eax, eax
    jnz lt_map_failed
lt_mapped:
    mov dword ptr [esp + LXF_DOPE], L4_IPC_DOPE_FPAGE_RECEIVED
; -- the memory message: dwords and strings (lx_stage), restarted after each fault
lt_long:
    mov eax, [esi + TCB_SND_DESC]
    and eax, 0xFFFFFFFC
    mov [lx_sbuf], eax
    mov eax, [esp + LXF_RDESC]
    cmp eax, L4_IPC_NIL_DESCRIPTOR
    je lt_nobuf
    test al, L4_IPC_RMAP
    jnz lt_nobuf
    and eax, 0xFFFFFFFC
    jmp lt_rbuf
lt_nobuf:
    xor eax, eax
lt_rbuf:
    mov [lx_rbuf], eax
    mov eax, [esi + TCB_SPACE]
    mov [lx_spd], eax
    mov eax, [edi + TCB_SPACE]
    mov [lx_rpd], eax
    call lx_stage
    jc lt_stage_fault
    ; a map message: more fpage pairs (send base, fpage) in dwords 2-3, 4-5, ... while both
    ; buffers' dwords cover the pair, up to an fpage 0 (as Fiasco V2's long IPC).  The copy
    ; has just read these dwords: no fault (and no repetition of a grant) can happen here.
    cmp dword ptr [esp + LXF_WINDOW], 0
    je lt_stage_done
    mov dword ptr [lx_k], 2
lt_pairs:
    mov eax, [lx_k]
    inc eax
    cmp eax, [lx_n]
    jae lt_stage_done
    shl eax, 2
    add eax, L4_MSG_DWORD0
    add eax, [lx_sbuf]
    call lx_sread                       ; the fpage
    jc lt_stage_done
    test eax, eax
    jz lt_stage_done                    ; the end of the list
    mov [lx_val], eax
    mov eax, [lx_k]
    shl eax, 2
    add eax, L4_MSG_DWORD0
    add eax, [lx_sbuf]
    call lx_sread                       ; the send base
    jc lt_stage_done
    mov edx, eax
    mov ecx, [lx_val]
    mov eax, [esp + LXF_WINDOW]
    call map_fpage
    test eax, eax
    jz lt_pair_mapped
    cmp eax, 1
    je lt_map_failed
    mov ecx, [lx_val]
    cmp ecx, L4_IOFPAGE_MARK
    jb lt_pair_next
    call io_map
    test eax, eax
    jnz lt_map_failed
lt_pair_mapped:
    mov dword ptr [esp + LXF_DOPE], L4_IPC_DOPE_FPAGE_RECEIVED
lt_pair_next:
    add dword ptr [lx_k], 2
    jmp lt_pairs
lt_stage_done:
    mov eax, [lx_rdope]
    or eax, [esp + LXF_DOPE]
    cmp dword ptr [lx_cut], 0
    je lt_done
lt_cut_dope:
    or eax, L4_IPC_REMSGCUT
    mov dword ptr [esp + LXF_SERR], L4_IPC_SEMSGCUT
lt_done:
    mov ecx, [esp + LXF_S]
    or eax, [ecx + TCB_CLAN]            ; redirected, inside, deceited (0 for most)
    mov [edi + TCB_RES_DOPE], eax
    mov eax, [esp + LXF_SERR]
    xor edx, edx
lt_out:
    add esp, LXF_SIZE
    pop ebx
    ret
lt_stage_fault:
    cmp eax, LX_BAD
    je lt_stage_bad
    mov eax, [lx_fault_side]
    mov [esp + LXF_FSIDE], eax
    mov eax, [lx_fault_addr]
    jmp lt_fault_at
lt_stage_bad:                           ; what was copied stays; the message is cut there
    mov eax, [lx_rdope]
    or eax, [esp + LXF_DOPE]
    jmp lt_cut_dope
lt_bad:                                 ; the receiver's buffer header itself is unusable
    mov eax, [esp + LXF_DOPE]
    jmp lt_cut_dope
lt_map_failed:
    mov dword ptr [edi + TCB_RES_DOPE], L4_IPC_REMAPFAILED
    mov eax, L4_IPC_SEMAPFAILED
    xor edx, edx
    jmp lt_out

; A fault at eax (user address) in the space of the sender (LXF_FSIDE 0) or the receiver (1).
lt_fault_at:
    and eax, 0xFFFFFFFC
    cmp dword ptr [esp + LXF_FSIDE], 0
    je lt_fault_word
    or eax, L4_PF_WRITE                 ; the receiver's side is written
lt_fault_word:
    mov [esp + LXF_FWORD], eax
    ; the timeout and the errors if it expires: a fault in the receiver's space is under
    ; the sender's snd_pfault, one in the sender's space under the receiver's rcv_pfault
    cmp dword ptr [esp + LXF_FSIDE], 0
    je lt_fault_snd
    mov ecx, [esi + TCB_TIMEOUT]
    shr ecx, 12                         ; snd_pfault
    mov dword ptr [esp + LXF_SERR], L4_IPC_SESNDPFTO
    mov dword ptr [esp + LXF_RERR], L4_IPC_RESNDPFTO
    mov ebx, edi                        ; the faulting party
    jmp lt_fault_to
lt_fault_snd:
    mov ecx, [esp + LXF_RTO]
    shr ecx, 8                          ; rcv_pfault
    mov dword ptr [esp + LXF_SERR], L4_IPC_SERCVPFTO
    mov dword ptr [esp + LXF_RERR], L4_IPC_RERCVPFTO
    mov ebx, esi
lt_fault_to:
    and ecx, 0x0F
    cmp ecx, 15
    je lt_pf_expired                    ; a zero page-fault timeout
    mov eax, [esp + LXF_FWORD]
    or eax, [esp + LXF_FSIDE]
    cmp eax, [esp + LXF_LAST]
    je lt_pf_expired                    ; its pager answered without mapping it
    mov [esp + LXF_LAST], eax
    mov eax, [ebx + TCB_PAGER_LO]
    or eax, [ebx + TCB_PAGER_HI]
    jz lt_pf_expired                    ; no pager: nobody can resolve it
    mov eax, esi                        ; the other party: locked, it could never answer
    cmp ebx, esi
    jne lt_other
    mov eax, edi
lt_other:
    mov edx, [eax + TCB_ID_LO]
    cmp edx, [ebx + TCB_PAGER_LO]
    jne lt_pager_ok
    mov edx, [eax + TCB_ID_HI]
    cmp edx, [ebx + TCB_PAGER_HI]
    je lt_pf_expired
lt_pager_ok:
    ; the page-fault IPC's timeout word: send and receive 4^(15-p) us (p = 0: never)
    mov edx, ecx
    jecxz lt_fault_lock
    shl edx, 4
    or edx, ecx
    or edx, LX_PF_MANTISSAS
lt_fault_lock:
    ; lock the partner of the current thread: no timeout, nobody delivers to it
    mov ecx, esi
    cmp ecx, ebp
    jne lt_lock_it
    mov ecx, edi
lt_lock_it:
    push esi
    push edx
    mov esi, ecx
    call timeout_remove
    pop edx
    mov dword ptr [esi + TCB_STATE], TS_LOCKED
    mov [ebp + TCB_LK_N], esi
    pop esi
    mov eax, [esp + LXF_FWORD]
    cmp ebx, ebp
    jne lt_tunnel
    call lx_pager_ipc                   ; our own space: the page-fault IPC from here
    jmp lt_resolved
lt_tunnel:                              ; the partner's space: it runs the IPC itself
    mov [ebx + TCB_LK_ADDR], eax
    mov [ebx + TCB_LK_TO], edx
    mov [ebx + TCB_LK_T], ebp
    mov dword ptr [ebp + TCB_LK_RESULT], LX_WAITING
    mov eax, [ebx + TCB_KSP]
    sub eax, 4
    mov dword ptr [eax], lx_tunnel
    mov [ebx + TCB_KSP], eax
    mov dword ptr [ebp + TCB_STATE], TS_LOCKED
    push esi
    mov esi, ebx
    call thread_wake
    mov eax, esi
    pop esi
    call switch_to                      ; back here when the tunnel hands the CPU back
    mov ebp, esp
    and ebp, 0xFFFFFC00
    mov eax, [ebp + TCB_LK_RESULT]
lt_resolved:                            ; eax = the page-fault IPC's result (or LX_GONE)
    mov dword ptr [ebp + TCB_LK_N], 0
    mov esi, [esp + LXF_S]
    mov edi, [esp + LXF_R]
    ; is the partner still there, still locked for us?
    mov ecx, esi
    mov edx, [esp + LXF_SID]
    cmp ecx, ebp
    jne lt_check
    mov ecx, edi
    mov edx, [esp + LXF_RID]
lt_check:
    cmp [ecx + TCB_ID_LO], edx
    jne lt_gone
    cmp dword ptr [ecx + TCB_STATE], TS_LOCKED
    jne lt_gone
    cmp eax, LX_GONE
    je lt_gone
    and eax, L4_IPC_ERROR_MASK
    jz lt_long_again
    cmp eax, L4_IPC_RECANCELED
    jne lt_pf_expired
    mov dword ptr [esp + LXF_SERR], L4_IPC_SEABORTED    ; the faulting party was cancelled
    mov dword ptr [esp + LXF_RERR], L4_IPC_REABORTED
lt_pf_expired:
    mov eax, [esp + LXF_RERR]
    mov [edi + TCB_RES_DOPE], eax
    mov eax, [esp + LXF_SERR]
    xor edx, edx
    jmp lt_out
lt_long_again:
    mov dword ptr [ebp + TCB_STATE], TS_READY
    xor eax, eax
    mov [esp + LXF_SERR], eax           ; (set for the fault's expiry)
    mov [esp + LXF_RERR], eax
    test byte ptr [esi + TCB_SND_DESC], 2
    jz lt_long
    cmp dword ptr [esp + LXF_DOPE], 0
    je lt_map                           ; the fault was in reading the window
    jmp lt_long
lt_gone:                                ; the partner was deleted: only we hear of it
    mov dword ptr [ebp + TCB_STATE], TS_READY
    mov dword ptr [ebp + TCB_RES_DOPE], L4_IPC_REABORTED
    mov eax, L4_IPC_SEABORTED
    mov edx, 1
    jmp lt_out

; lx_pager_ipc: eax = fault word (address | L4_PF_WRITE), edx = timeout word.  The current
; thread (ebp) calls its pager as for a user page fault, receiving a map into its whole space,
; and keeps the IPC it is in (its TCB_SND_DESC ... TCB_WOKEN, TCB_WAIT_FOR, TCB_PARTNER) on
; its kernel stack meanwhile.  eax = the page-fault IPC's result dope.  Clobbers all but ebp.
lx_pager_ipc:
    push dword ptr [ebp + TCB_WAIT_FOR]
    push dword ptr [ebp + TCB_PARTNER]
    lea esi, [ebp + TCB_SND_DESC]
    mov ecx, 17                         ; TCB_SND_DESC ... TCB_WOKEN
lpi_save:
    push dword ptr [esi]
    add esi, 4
    loop lpi_save
    mov [ebp + TCB_MSG0], eax
    mov [ebp + TCB_TIMEOUT], edx
    mov eax, [ebp + TCB_IRET]           ; the thread's user EIP
    mov [ebp + TCB_MSG1], eax
    PF_IPC_TO_PAGER                     ; (ipc.asm)
    mov [ebp + TCB_CONT_ESP], esp
    mov dword ptr [ebp + TCB_CONT_EIP], lpi_back
    mov dword ptr [ebp + TCB_RCV_STATE], TS_WAIT_PF
    inc dword ptr [lx_pf_count]
    call ipc_do
lpi_back:                               ; esp = CONT_ESP, by return or continuation
    mov ebp, esp
    and ebp, 0xFFFFFC00
    mov eax, [ebp + TCB_RES_DOPE]
    lea esi, [ebp + TCB_WOKEN]
    mov ecx, 17
lpi_restore:
    pop dword ptr [esi]
    sub esi, 4
    loop lpi_restore
    pop dword ptr [ebp + TCB_PARTNER]
    pop dword ptr [ebp + TCB_WAIT_FOR]
    ret

; lx_tunnel: a locked partner resumes here (pushed on its kernel stack by lt_tunnel) to
; resolve a fault in its own space for the thread in TCB_LK_T, then hands the CPU back to it.
; Below the pushed address its stack is as it blocked: that is where it resumes later.
lx_tunnel:
    mov ebp, esp
    and ebp, 0xFFFFFC00
    mov eax, [ebp + TCB_LK_ADDR]
    mov edx, [ebp + TCB_LK_TO]
    call lx_pager_ipc
    mov ebp, esp
    and ebp, 0xFFFFFC00
    mov [ebp + TCB_KSP], esp            ; it resumes where it blocked
    mov esi, [ebp + TCB_LK_T]
    mov dword ptr [ebp + TCB_LK_T], 0
    test esi, esi
    jz lxt_orphan
    cmp dword ptr [esi + TCB_STATE], TS_LOCKED
    jne lxt_orphan
    cmp dword ptr [esi + TCB_LK_RESULT], LX_WAITING
    jne lxt_orphan
    mov [esi + TCB_LK_RESULT], eax
    mov dword ptr [ebp + TCB_STATE], TS_LOCKED
    call thread_wake
    mov eax, esi
    jmp resume_tcb
lxt_orphan:                             ; the thread that ran the transfer is gone
    mov dword ptr [ebp + TCB_RES_DOPE], L4_IPC_REABORTED
    mov dword ptr [ebp + TCB_IPC_STATUS], L4_IPC_SEABORTED
    mov esi, ebp
    call thread_wake
    mov eax, ebp
    jmp resume_tcb

; lipc_delete: from thread_delete; esi = the thread being deleted.  A transfer it takes part
; in while a fault is resolved must not wait for it forever.  Clobbers eax, edx.
lipc_delete:
    mov eax, [esi + TCB_LK_T]           ; it runs a tunnel for eax: wake that one
    test eax, eax
    jz lpd_n
    mov dword ptr [esi + TCB_LK_T], 0
    cmp dword ptr [eax + TCB_STATE], TS_LOCKED
    jne lpd_n
    mov dword ptr [eax + TCB_LK_RESULT], LX_GONE
    push esi
    mov esi, eax
    call thread_wake
    pop esi
lpd_n:
    mov eax, [esi + TCB_LK_N]           ; it ran a transfer and locked eax: release it
    test eax, eax
    jz lpd_done
    mov dword ptr [esi + TCB_LK_N], 0
    cmp dword ptr [eax + TCB_STATE], TS_LOCKED
    jne lpd_done                        ; (it runs the tunnel: lx_tunnel finds us gone)
    mov dword ptr [eax + TCB_RES_DOPE], L4_IPC_REABORTED
    mov dword ptr [eax + TCB_IPC_STATUS], L4_IPC_SEABORTED
    push esi
    mov esi, eax
    call thread_wake
    pop esi
lpd_done:
    ret

; -- the copy engine (no blocking: restartable) -----------------------------------------------
; lx_xlate: eax = user address, edx = page directory (physical), ebx = PTE bits required
; (PTE_P | PTE_U, | PTE_W to write).  CF clear: eax = the kernel's address of it (physical
; window).  CF set: eax = LX_FAULT (not mapped so), LX_BAD (kernel address, no space, frame
; outside the window).  Clobbers ecx, edx.
lx_xlate:
    cmp eax, L4_USER_LIMIT
    jae lxx_bad
    test edx, edx
    jz lxx_bad
    mov ecx, eax
    shr ecx, 22
    mov ecx, [edx + ecx*4 + KOFF]
    mov edx, ecx
    and edx, ebx
    cmp edx, ebx
    jne lxx_fault
    test ecx, PTE_PS
    jnz lxx_super
    and ecx, PAGE_MASK
    mov edx, eax
    shr edx, 12
    and edx, 0x3FF
    mov ecx, [ecx + edx*4 + KOFF]
    mov edx, ecx
    and edx, ebx
    cmp edx, ebx
    jne lxx_fault
    and ecx, PAGE_MASK
    and eax, 0xFFF
    jmp lxx_have
lxx_super:
    and ecx, SUPER_MASK
    and eax, 0x3FFFFF
lxx_have:
    add eax, ecx
    cmp eax, L4_PHYS_WINDOW
    jae lxx_bad
    add eax, KOFF
    clc
    ret
lxx_fault:
    mov eax, LX_FAULT
    stc
    ret
lxx_bad:
    mov eax, LX_BAD
    stc
    ret

; lx_sread: eax = address in the sender's buffer area -> eax = the dword (CF clear), or CF
; set with eax = LX_FAULT/LX_BAD and the fault noted.  Clobbers ebx, ecx, edx.
lx_sread:
    mov [lx_fault_addr], eax
    mov dword ptr [lx_fault_side], 0
    mov edx, [lx_spd]
    mov ebx, PTE_P | PTE_U
    call lx_xlate
    jc lxr_out
    mov eax, [eax]
lxr_out:
    ret
; lx_rread: the same in the receiver's space (readable is enough: its buffer is an input).
lx_rread:
    mov [lx_fault_addr], eax
    mov dword ptr [lx_fault_side], 1
    mov edx, [lx_rpd]
    mov ebx, PTE_P | PTE_U
    call lx_xlate
    jc lxr_out
    mov eax, [eax]
    ret
; lx_rwrite: eax = address in the receiver's space, [lx_val] = the dword to write there.
lx_rwrite:
    mov [lx_fault_addr], eax
    mov dword ptr [lx_fault_side], 1
    mov edx, [lx_rpd]
    mov ebx, PTE_P | PTE_U | PTE_W
    call lx_xlate
    jc lxr_out
    mov ecx, [lx_val]
    mov [eax], ecx
    ret

; lx_copy: [lx_len] bytes from [lx_src] (sender's space) to [lx_dst] (receiver's space), a
; page piece at a time.  CF set on a fault (noted) or LX_BAD; what was copied stays.
; Clobbers eax, ebx, ecx, edx.
lx_copy:
    push esi
    push edi
lxc_loop:
    cmp dword ptr [lx_len], 0
    je lxc_done
    mov eax, [lx_src]
    mov [lx_fault_addr], eax
    mov dword ptr [lx_fault_side], 0
    mov edx, [lx_spd]
    mov ebx, PTE_P | PTE_U
    call lx_xlate
    jc lxc_out
    mov esi, eax
    mov eax, [lx_dst]
    mov [lx_fault_addr], eax
    mov dword ptr [lx_fault_side], 1
    mov edx, [lx_rpd]
    mov ebx, PTE_P | PTE_U | PTE_W
    call lx_xlate
    jc lxc_out
    mov edi, eax
    mov ecx, esi                        ; the piece: up to the end of either page
    and ecx, 0xFFF
    neg ecx
    add ecx, 0x1000
    mov edx, edi
    and edx, 0xFFF
    neg edx
    add edx, 0x1000
    cmp edx, ecx
    jae lxc_src_end
    mov ecx, edx
lxc_src_end:
    cmp ecx, [lx_len]
    jbe lxc_piece
    mov ecx, [lx_len]
lxc_piece:
    sub [lx_len], ecx
    add [lx_src], ecx
    add [lx_dst], ecx
    mov edx, ecx
    shr ecx, 2
    rep movsd dword ptr es:[edi], dword ptr [esi]
    mov ecx, edx
    and ecx, 3
    rep movsb
    jmp lxc_loop
lxc_done:
    clc
lxc_out:
    pop edi
    pop esi
    ret

; lx_stage: the memory message from [lx_sbuf] (sender) to [lx_rbuf] (receiver, 0 = none).
; Out: [lx_rdope] = dwords << 13 | strings << 8 received so far, [lx_cut] = 1 when cut.
; CF set: a fault (lx_fault_*) or LX_BAD in eax.  Clobbers eax, ebx, ecx, edx.
lx_stage:
    xor eax, eax
    mov [lx_rdope], eax
    mov [lx_cut], eax
    mov [lx_n], eax
    mov eax, [lx_sbuf]
    add eax, L4_MSG_SND_DOPE
    call lx_sread
    jc lxs_out
    mov ecx, eax
    shr ecx, L4_MSG_DOPE_DWORDS_SHIFT
    mov [lx_dwords], ecx
    shr eax, 8
    and eax, LX_STRINGS_MASK
    mov [lx_strings], eax
    cmp dword ptr [lx_dwords], 2
    ja lxs_long
    test eax, eax
    jz lxs_ok                           ; at most the register words: a short message
lxs_long:
    cmp dword ptr [lx_rbuf], 0
    jne lxs_buffers
    mov dword ptr [lx_cut], 1           ; a short receive: the registers only
    jmp lxs_ok
lxs_buffers:
    mov eax, [lx_rbuf]
    add eax, L4_MSG_SIZE_DOPE
    call lx_rread
    jc lxs_out
    mov ecx, eax
    shr ecx, L4_MSG_DOPE_DWORDS_SHIFT
    mov [lx_rdw], ecx
    shr eax, 8
    and eax, LX_STRINGS_MASK
    mov [lx_rst], eax
    mov eax, [lx_sbuf]
    add eax, L4_MSG_SIZE_DOPE
    call lx_sread
    jc lxs_out
    shr eax, L4_MSG_DOPE_DWORDS_SHIFT
    mov [lx_sdw], eax
    ; dwords 2.. (the receiver's size dope is the limit)
    mov eax, [lx_dwords]
    cmp eax, [lx_rdw]
    jbe lxs_dw_fit
    mov eax, [lx_rdw]
    mov dword ptr [lx_cut], 1
lxs_dw_fit:
    mov [lx_n], eax
    cmp eax, 2
    jbe lxs_dw_done
    sub eax, 2
    shl eax, 2
    mov [lx_len], eax
    mov eax, [lx_sbuf]
    add eax, L4_MSG_DWORD0 + 8
    mov [lx_src], eax
    mov eax, [lx_rbuf]
    add eax, L4_MSG_DWORD0 + 8
    mov [lx_dst], eax
    call lx_copy
    jc lxs_out
lxs_dw_done:
    mov eax, [lx_n]
    shl eax, L4_MSG_DOPE_DWORDS_SHIFT
    mov [lx_rdope], eax
    cmp dword ptr [lx_cut], 0
    jne lxs_ok                          ; cut in the dwords: no strings
    ; strings: send dope i at sbuf + 12 + 4 * sdw + 16 * i, receive dope i likewise
    mov dword ptr [lx_k], 0
lxs_string:
    mov eax, [lx_k]
    cmp eax, [lx_strings]
    jae lxs_ok
    cmp eax, [lx_rst]
    jae lxs_str_cut                     ; more strings than the receiver takes
    shl eax, 4
    mov ecx, [lx_sdw]
    lea ecx, [eax + ecx*4 + L4_MSG_DWORD0]
    add ecx, [lx_sbuf]
    mov [lx_sd], ecx
    mov ecx, [lx_rdw]
    lea ecx, [eax + ecx*4 + L4_MSG_DWORD0]
    add ecx, [lx_rbuf]
    mov [lx_rd], ecx
    mov eax, [lx_sd]
    call lx_sread                       ; snd_size
    jc lxs_out
    mov [lx_len], eax
    mov eax, [lx_sd]
    add eax, 4
    call lx_sread                       ; snd_str
    jc lxs_out
    mov [lx_src], eax
    mov eax, [lx_rd]
    add eax, 8
    call lx_rread                       ; rcv_size
    jc lxs_out
    cmp eax, [lx_len]
    jae lxs_str_fits
    mov [lx_len], eax
    mov dword ptr [lx_cut], 1
lxs_str_fits:
    mov eax, [lx_len]
    mov [lx_val], eax                   ; what the receiver will get
    mov eax, [lx_rd]
    call lx_rwrite                      ; its snd_size = the bytes received
    jc lxs_out
    mov eax, [lx_rd]
    add eax, 12
    call lx_rread                       ; rcv_str
    jc lxs_out
    mov [lx_dst], eax
    mov [lx_val], eax
    mov eax, [lx_rd]
    add eax, 4
    call lx_rwrite                      ; its snd_str = rcv_str
    jc lxs_out
    call lx_copy
    jc lxs_out
    inc dword ptr [lx_k]
    add dword ptr [lx_rdope], 1 << 8
    cmp dword ptr [lx_cut], 0
    je lxs_string
    jmp lxs_ok
lxs_str_cut:
    mov dword ptr [lx_cut], 1
lxs_ok:
    clc
lxs_out:
    ret

.section .data
.align 4
lx_count: .long 0                       ; long sends (for tools and tests)
lx_pf_count: .long 0                    ; page-fault IPCs made for transfers
lx_spd: .long 0                         ; the sender's page directory
lx_rpd: .long 0
lx_sbuf: .long 0
lx_rbuf: .long 0
lx_dwords: .long 0
lx_strings: .long 0
lx_sdw: .long 0
lx_rdw: .long 0
lx_rst: .long 0
lx_n: .long 0
lx_k: .long 0
lx_sd: .long 0
lx_rd: .long 0
lx_src: .long 0
lx_dst: .long 0
lx_len: .long 0
lx_val: .long 0
lx_rdope: .long 0
lx_cut: .long 0
lx_fault_addr: .long 0
lx_fault_side: .long 0

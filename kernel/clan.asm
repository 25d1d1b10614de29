; kernel/clan.asm: clans and chiefs (Liedtke, "Clans & Chiefs", 1992; the L4 x86 V2 reference
; manual's ipc and id_nearest; l4sys V2 syscalls.h l4_nchief and ipc.h l4_ipc_deceit_ids_t).
;
; A task's chief is the task that created it (task_new: TASK_CHIEF, also in the ID's chief
; field); the boot tasks' chief is the kernel (0), whose clan holds everything.  A task
; belongs to two clans: the one its chief heads and the one it heads itself.  A message goes
; to its destination directly when they share a clan: siblings (the same chief), a task and
; its chief, a chief and a member of its clan (and threads of one task).  Any other message
; crosses a clan border and goes, instead, to lthread 0 of the nearest chief on the way
; through the task tree:
;   - the destination is below the sender or below a sibling X (X's clan, or deeper): the
;     message enters the clan it is in from outside; it goes to the chief of the outermost
;     clan it enters, the task on the way whose chief is the sender or the sender's chief
;     (id_nearest: L4_NC_INNER_CLAN);
;   - otherwise it leaves the sender's clan: to the sender's own chief (L4_NC_OUTER_CLAN).
; The chief receives it with msg_redirected (and src_inside when it leaves the sender's clan,
; i.e. the sender is inside the receiving chief's clan), ESI:EDI = the true source and
; ECX:EBP = the intended destination (V2 register convention of the redirected receive, as
; in TU Dresden's ln_i386_ipc_wait_redirect binding for Liedtke's L4/x86 kernel).  It may
; forward it with the deceit bit: the receiver sees the virtual source with msg_deceited.
; Deceit is "direction preserving" (l4_ipc_send_deceiting's manual page): exactly one of the
; virtual source and the destination is inside the deceiver's clan (below it in the tree);
; the virtual source must exist.  Otherwise the bit is ignored and the message carries the
; deceiver's own ID.  As in V2's bindings the virtual source is on the user stack: [ESP] and
; [ESP+4] when the kernel is entered.
;
; Destinations are routed by the task table (every task number has a chief, active or not),
; so id_nearest and redirection are defined for any ID; task numbers beyond the table belong
; to the kernel's clan.  The general path's first test (ipc.asm) is that the two ID high words
; are equal (the same chief: siblings, or one task), which goes directly.  The fast path
; (fastpath.asm) compares TCB_FAST_CLAN, set at thread creation: the chief's task number, for
; a boot task its own.  Equal means siblings, or a boot task and a task it created: direct.
; (One compare cannot cover all the direct pairs; the rest take the general path.)

.equ CLAN_MAX_DEPTH, L4_MAX_TASKS       ; a chain of chiefs is never longer (inactive ones
                                        ; handed around may form a cycle: stop there)

.equ CLAN_DOPE_OUT, L4_IPC_DOPE_REDIRECTED + L4_IPC_DOPE_SRC_INSIDE

.section .text
; clan_chief: eax = task -> eax = its chief (0 for numbers beyond the table).
clan_chief:
    cmp eax, L4_MAX_TASKS
    jae cc_kernel
    shl eax, TASK_ENTRY_SHIFT
    add eax, tasks
    mov eax, [eax + TASK_CHIEF]
    ret
cc_kernel:
    xor eax, eax
    ret

; clan_next: eax = the sender's task s, edx = the destination's task d -> eax = L4_NC_SAME_CLAN
; (the message goes to d directly), or L4_NC_INNER_CLAN / L4_NC_OUTER_CLAN with edx = the
; chief task whose lthread 0 gets it instead.  Walks up from d until it meets s or s's chief p:
; d is then in the subtree of that task x; if d is x or in x's own clan, directly, else to
; the member of x's clan on the way down (the chief of the outermost clan the message
; enters).  Not meeting them (the kernel reached first): outside, to p.  Clobbers ecx.
clan_next:
    push ebx
    push esi
    push edi
    push ebp
    mov esi, eax                        ; s
    call clan_chief
    mov edi, eax                        ; p
    mov ebx, edx                        ; x: walks up from d
    mov ecx, -1                         ; the task below x on the way (none yet)
    mov ebp, CLAN_MAX_DEPTH
cn_walk:
    cmp ebx, esi
    je cn_met
    cmp ebx, edi
    je cn_met
    test ebx, ebx
    jz cn_outer
    dec ebp
    jz cn_outer
    mov ecx, ebx
    mov eax, ebx
    call clan_chief
    mov ebx, eax
    jmp cn_walk
cn_met:
    xor eax, eax
    cmp ecx, -1
    je cn_done                          ; d is s or p itself
    cmp ecx, edx
    je cn_done                          ; d is in x's clan
    mov eax, L4_NC_INNER_CLAN
    mov edx, ecx
    jmp cn_done
cn_outer:
    xor eax, eax
    test edi, edi
    jz cn_done                          ; a boot task: the kernel's clan holds everything
    mov eax, L4_NC_OUTER_CLAN
    mov edx, edi
cn_done:
    pop ebp
    pop edi
    pop esi
    pop ebx
    ret

; clan_inside: eax = task x, edx = task c -> CF set if x is inside c's clan (c is a proper
; ancestor of x).  Clobbers eax, ecx.
clan_inside:
    mov ecx, CLAN_MAX_DEPTH
ci_up:
    call clan_chief
    cmp eax, edx
    je ci_yes
    test eax, eax
    jz ci_no
    dec ecx
    jnz ci_up
ci_no:
    clc
    ret
ci_yes:
    stc
    ret

; ipc_snd_clan_dest: from ipc_short_send (ipc.asm) when the sender (ebp) deceives or its
; destination (esi, eax = its ID high word) has another chief.  ipc_snd_clan: the same when
; there is no such thread (eax = 0).  They route the send: on to ipc_snd_routed with esi = the
; thread that receives it (TCB_CLAN and TCB_VSRC* say what it sees), or ENOT_EXISTENT.
ipc_snd_clan_dest:
    test byte ptr [ebp + TCB_SND_DESC], L4_IPC_DECEIT
    jnz isc_walk_dest
    shr eax, L4_ID_CHIEF_SHIFT          ; the usual cases first: a chief to its clan ...
    and eax, L4_ID_TASK_MASK
    cmp eax, [ebp + TCB_TASK]
    je ipc_snd_routed
    mov eax, [ebp + TCB_ID_HI]          ; ... a task to its chief
    shr eax, L4_ID_CHIEF_SHIFT
    and eax, L4_ID_TASK_MASK
    cmp eax, [esi + TCB_TASK]
    je ipc_snd_routed
isc_walk_dest:
    mov eax, esi
ipc_snd_clan:
    mov edx, [ebp + TCB_DEST_LO]        ; the nil ID names nobody, in any clan
    or edx, [ebp + TCB_DEST_HI]
    jz ipc_snd_not_existent
    push ebx
    mov ebx, eax
    test byte ptr [ebp + TCB_SND_DESC], L4_IPC_DECEIT
    jz isc_route
    call clan_deceit
isc_route:
    mov eax, [ebp + TCB_TASK]
    mov edx, [ebp + TCB_DEST_LO]
    shr edx, L4_ID_TASK_SHIFT
    and edx, L4_ID_TASK_MASK
    call clan_next
    mov esi, ebx
    pop ebx
    test eax, eax
    jz isc_done                         ; directly
    mov ecx, CLAN_DOPE_OUT              ; out of the sender's clan
    cmp eax, L4_NC_OUTER_CLAN
    je isc_bits
    mov ecx, L4_IPC_DOPE_REDIRECTED     ; into a clan from outside
isc_bits:
    or [ebp + TCB_CLAN], ecx
    mov eax, edx
    xor edx, edx
    call tcb_of                         ; the chief's lthread 0
    xor esi, esi
    cmp dword ptr [eax + TCB_ID_LO], 0
    je isc_done
    mov esi, eax
isc_done:
    test esi, esi
    jz ipc_snd_not_existent
    jmp ipc_snd_routed

; clan_deceit: ebp = a sender with the deceit bit.  If V2 permits it, TCB_CLAN gets
; msg_deceited and TCB_VSRC* the virtual source read from the user stack.  Preserves ebx.
clan_deceit:
    push ebx
    mov esi, [ebp + TF_ESP]
    call uread_dword
    jc cd_no
    mov ebx, eax
    add esi, 4
    call uread_dword
    jc cd_no
    mov edx, eax
    mov eax, ebx
    call tcb_lookup                     ; the virtual source must exist
    test eax, eax
    jz cd_no
    mov ebx, eax
    mov eax, [ebx + TCB_TASK]           ; direction preserving: one of the two is inside
    mov edx, [ebp + TCB_TASK]
    call clan_inside
    sbb esi, esi                        ; -1: the virtual source is inside
    mov eax, [ebp + TCB_DEST_LO]
    shr eax, L4_ID_TASK_SHIFT
    and eax, L4_ID_TASK_MASK
    mov edx, [ebp + TCB_TASK]
    call clan_inside
    sbb eax, eax                        ; -1: the destination is inside
    cmp eax, esi
    je cd_no
    mov [ebp + TCB_VSRC], ebx
    mov eax, [ebx + TCB_ID_LO]
    mov [ebp + TCB_VSRC_LO], eax
    mov eax, [ebx + TCB_ID_HI]
    mov [ebp + TCB_VSRC_HI], eax
    or dword ptr [ebp + TCB_CLAN], L4_IPC_DOPE_DECEITED
cd_no:
    pop ebx
    ret

; uread_dword: esi = user address -> eax = the dword there; CF set if it is not readable
; (not user memory, or not mapped).
uread_dword:
    cmp esi, L4_USER_LIMIT - 4
    ja urd_fail
    mov eax, urd_fail                   ; (keystone cannot store a label into a label)
    mov [uaccess_fixup], eax
    mov eax, [esi]
    mov dword ptr [uaccess_fixup], 0
    clc
    ret
urd_fail:                               ; exc_pf resumes here after a fault
    stc
    ret

; xfer_clan: from ipc_transfer; esi = a sender whose TCB_CLAN is not 0, edi = the receiver.
; Its results get the dope bits and the virtual source; a redirected message's intended
; destination goes straight to the receiver's ECX:EBP.  Clobbers eax, ecx.
xfer_clan:
    call clan_results
    jmp xfer_clan_done

; clan_results: esi = a sender whose TCB_CLAN is not 0, edi = the receiver (from ipc_transfer
; and longipc.asm's lipc_transfer).  Clobbers eax, ecx.
clan_results:
    mov eax, [esi + TCB_CLAN]
    mov [edi + TCB_RES_DOPE], eax
    test al, L4_IPC_DOPE_DECEITED
    jz xc_dest
    mov eax, [esi + TCB_VSRC_LO]
    mov [edi + TCB_RES_SRC_LO], eax
    mov eax, [esi + TCB_VSRC_HI]
    mov [edi + TCB_RES_SRC_HI], eax
xc_dest:
    test byte ptr [esi + TCB_CLAN], L4_IPC_DOPE_REDIRECTED
    jz cr_done
    ; ECX:EBP of a receiver in the ipc system call (the current thread, or one blocked with
    ; ipc_resume_user as its resume point): its register frame is at TCB_FRAME.
    mov eax, esp
    and eax, 0xFFFFFC00
    cmp eax, edi
    je xc_current
    mov eax, [edi + TCB_KSP]
    mov ecx, ipc_resume_user
    cmp [eax], ecx
    jne cr_done
xc_frame:
    mov eax, [esi + TCB_DEST_LO]
    mov [edi + TF_ECX], eax
    mov eax, [esi + TCB_DEST_HI]
    mov [edi + TF_EBP], eax
    ret
xc_current:
    cmp dword ptr [edi + TCB_RCV_STATE], TS_WAIT_RECV
    je xc_frame
cr_done:
    ret


; ias_clan: from ipc_after_send; the current thread (ebp) took the message of a caller (esi)
; whose destination (edx:eax) is another thread.  A call redirected to this chief: the caller
; waits for its destination at once all the same (the send/receive transition takes no time,
; so the answer the chief forwards as the destination may use send timeout 0).
ias_clan:
    test byte ptr [esi + TCB_CLAN], L4_IPC_DOPE_REDIRECTED
    jz ias_self
    call tcb_lookup
    test eax, eax
    jz ias_self
    mov edx, eax
    jmp ias_wait

; rf_deceit: from receiving_from; esi waits for the thread ecx, not for the sender ebp.  A
; deceiving sender is accepted when its virtual source is that thread.
rf_deceit:
    test byte ptr [ebp + TCB_CLAN], L4_IPC_DOPE_DECEITED
    jz rf_no
    cmp ecx, [ebp + TCB_VSRC]
    jne rf_no
    jmp rf_yes

; ipc_rcv_deceivers: from ipc_rcv_phase; the current thread (ebp) receives from esi, which is
; not sending to it: a chief deceiving as esi may be queued instead.
ipc_rcv_deceivers:
    mov eax, [ebp + TCB_SENDQ]
    test eax, eax
    jz ipc_rcv_block
    mov ecx, eax
ird_next:
    test byte ptr [ecx + TCB_CLAN], L4_IPC_DOPE_DECEITED
    jz ird_skip
    cmp [ecx + TCB_VSRC], esi
    je ird_found
ird_skip:
    mov ecx, [ecx + TCB_SQ_NEXT]
    cmp ecx, eax
    jne ird_next
    jmp ipc_rcv_block
ird_found:
    mov esi, ecx
    jmp ipc_rcv_take

; id_nearest (ESI:EDI = destination, nil = myself) -> EAX = L4_NC_*, ESI:EDI = the thread a
; message to it reaches: the destination itself (L4_NC_SAME_CLAN), or lthread 0 of the chief
; it is redirected to (for an inactive chief task: its task ID, as task_new answers).
sys_id_nearest:
    mov dword ptr [ebx + R_EAX], L4_NC_SAME_CLAN
    mov eax, [ebx + R_ESI]
    or eax, [ebx + R_EDI]
    jnz idn_route
    mov eax, [ebp + TCB_ID_LO]
    mov [ebx + R_ESI], eax
    mov eax, [ebp + TCB_ID_HI]
    mov [ebx + R_EDI], eax
    ret
idn_route:
    mov eax, [ebp + TCB_TASK]
    mov edx, [ebx + R_ESI]
    shr edx, L4_ID_TASK_SHIFT
    and edx, L4_ID_TASK_MASK
    call clan_next
    test eax, eax
    jz idn_done
    mov [ebx + R_EAX], eax
    mov esi, edx
    mov eax, edx
    xor edx, edx
    call tcb_of
    mov ecx, [eax + TCB_ID_LO]
    test ecx, ecx
    jz idn_inactive
    mov [ebx + R_ESI], ecx
    mov ecx, [eax + TCB_ID_HI]
    mov [ebx + R_EDI], ecx
    ret
idn_inactive:
    mov eax, esi
    shl eax, TASK_ENTRY_SHIFT
    add eax, tasks
    mov ecx, [eax + TASK_VERSION]
    shl esi, L4_ID_TASK_SHIFT
    or esi, ecx
    mov [ebx + R_ESI], esi
    mov dword ptr [ebx + R_EDI], 0
idn_done:
    ret

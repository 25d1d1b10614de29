; kernel/thread.asm: thread control blocks.  Finding a thread by ID, creating and deleting
; threads, cancelling their IPC, and the lthread_ex_regs system call.
;
; A TCB lives at a fixed virtual address computed from the thread number.  Its page is the
; shared read-only zero page until a thread in it is created (tcb_page_ensure); a lookup of
; any well-formed ID therefore reads memory and compares the ID, and finds nothing where no
; thread exists.

.equ TCB_HEADER_DWORDS, TCB_HEADER / 4     ; cleared on creation

.section .text
; tcb_lookup: edx:eax = thread ID -> eax = its TCB, or 0 if there is no such thread (also for
; a task number beyond L4_MAX_TASKS).  Clobbers ecx.
tcb_lookup:
    mov ecx, eax
    and ecx, L4_ID_INDEX_MASK
    cmp ecx, L4_MAX_TASKS << L4_ID_TASK_SHIFT
    jae tl_none
    add ecx, L4_TCB_AREA
    cmp [ecx + TCB_ID_LO], eax
    jne tl_none
    cmp [ecx + TCB_ID_HI], edx
    jne tl_none
    mov eax, ecx
    ret
tl_none:
    xor eax, eax
    ret

; tcb_of: eax = task, edx = lthread -> eax = TCB address.
tcb_of:
    shl eax, 7
    add eax, edx
    shl eax, 10
    add eax, L4_TCB_AREA
    ret

; tcb_page_ensure: eax = TCB address -> eax = the same, its page now backed by a frame of its
; own (0 when the pool is empty).  Preserves all other registers.
tcb_page_ensure:
    push ecx
    push edx
    mov ecx, eax
    sub ecx, L4_TCB_AREA
    shr ecx, 12
    shl ecx, 2
    add ecx, [tcb_ptes]                 ; its PTE
    mov edx, [ecx]
    and edx, PAGE_MASK
    cmp edx, [zero_page]
    jne tpe_done
    push eax
    call pool_alloc
    test eax, eax
    jz tpe_fail
    or eax, PTE_W | PTE_P
    mov [ecx], eax
    pop eax
    invlpg [eax]
tpe_done:
    pop edx
    pop ecx
    ret
tpe_fail:
    pop eax
    xor eax, eax
    pop edx
    pop ecx
    ret

; tcb_pages_free: eax = task.  Gives the frames of its 32 TCB pages back to the pool; they
; read as the zero page again.  Clobbers eax, ecx, edx.
tcb_pages_free:
    push esi
    push edi
    shl eax, 5                          ; 32 pages per task (128 TCBs of 1 KiB)
    mov esi, eax
    shl esi, 2
    add esi, [tcb_ptes]                 ; first PTE
    shl eax, 12
    add eax, L4_TCB_AREA
    mov edi, eax                        ; first page
    mov ecx, 32
tpf_loop:
    mov eax, [esi]
    and eax, PAGE_MASK
    cmp eax, [zero_page]
    je tpf_next
    call pool_free
    mov eax, [zero_page]
    or eax, PTE_P
    mov [esi], eax
    invlpg [edi]
tpf_next:
    add esi, 4
    add edi, 0x1000
    loop tpf_loop
    pop edi
    pop esi
    ret

; thread_create: eax = task, ebx = lthread, ecx = esp, edx = eip, esi:edi = pager,
; ebp = priority -> eax = the new, ready TCB, or 0 when kernel memory is exhausted.
; Its ID takes the task's version, chief and nest.  Preserves ebx, esi, edi, ebp.
thread_create:
    push ebp                            ; [esp + 24] priority
    push edi                            ; [esp + 20] pager high
    push esi                            ; [esp + 16] pager low
    push edx                            ; [esp + 12] eip
    push ecx                            ; [esp + 8] esp
    push ebx                            ; [esp + 4] lthread
    push eax                            ; [esp] task
    mov edx, ebx
    call tcb_of
    mov edi, eax
    call tcb_page_ensure
    test eax, eax
    jz tc_fail
    xor eax, eax
    mov ecx, TCB_HEADER_DWORDS
    rep stosd
    mov edi, [esp]
    mov edx, [esp + 4]
    mov eax, edi
    call tcb_of
    mov edi, eax                        ; TCB
    mov esi, [esp]
    shl esi, TASK_ENTRY_SHIFT
    add esi, tasks                      ; task entry
    mov eax, [esp]
    shl eax, L4_ID_TASK_SHIFT
    mov edx, [esp + 4]
    shl edx, L4_ID_LTHREAD_SHIFT
    or eax, edx
    mov edx, [esi + TASK_VERSION]
    mov ecx, edx
    and edx, L4_ID_VERSION_LOW_MASK
    or eax, edx
    shr ecx, 10
    and ecx, 0xF
    shl ecx, L4_ID_VERSION_HIGH_SHIFT
    or eax, ecx
    mov [edi + TCB_ID_LO], eax
    mov eax, [esi + TASK_CHIEF]
    shl eax, L4_ID_CHIEF_SHIFT
    mov edx, [esi + TASK_NEST]
    shl edx, L4_ID_NEST_SHIFT
    or eax, edx
    mov [edi + TCB_ID_HI], eax
    mov eax, [esi + TASK_CHIEF]         ; the fast path's clan (clan.asm): the chief's number,
    test eax, eax                       ; a boot task's own
    jnz tc_fast_clan
    mov eax, [esp]
tc_fast_clan:
    mov [edi + TCB_FAST_CLAN], eax
    mov eax, [esi + TASK_PD]
    mov [edi + TCB_SPACE], eax
    mov [edi + TCB_CR3], eax
    mov dword ptr [edi + TCB_RCV_DEFAULT], TS_WAIT_RECV
    mov eax, [esp]
    mov [edi + TCB_TASK], eax
    mov eax, [esp + 16]
    mov [edi + TCB_PAGER_LO], eax
    mov eax, [esp + 20]
    mov [edi + TCB_PAGER_HI], eax
    mov dword ptr [edi + TCB_PREEMPT_LO], -1
    mov dword ptr [edi + TCB_PREEMPT_HI], -1
    mov eax, [esp + 24]
    mov [edi + TCB_PRIO], eax
    mov dword ptr [edi + TCB_TIMESLICE], DEFAULT_SLICE_TICKS
    mov dword ptr [edi + TCB_TICKS_LEFT], DEFAULT_SLICE_TICKS
    mov eax, [esp + 12]
    mov ecx, [esp + 8]
    call thread_frame_init
    mov dword ptr [edi + TCB_STATE], TS_READY
    mov esi, edi
    call ready_enqueue
    mov eax, edi
    jmp tc_out
tc_fail:
    xor eax, eax
tc_out:
    pop ecx
    pop ebx
    pop ecx
    pop edx
    pop esi
    pop edi
    pop ebp
    ret

; thread_frame_init: edi = TCB, eax = user EIP, ecx = user ESP.  A fresh kernel stack that
; enters user mode there with all other registers 0.  Clobbers eax, ecx, edx.
thread_frame_init:
    lea edx, [edi + TCB_IRET]
    mov [edx], eax
    mov dword ptr [edx + 4], L4_SEL_UCODE
    mov dword ptr [edx + 8], USER_EFLAGS
    mov [edx + 12], ecx
    mov dword ptr [edx + 16], L4_SEL_UDATA
    sub edx, 32                         ; pushad frame: all zero
    push edi
    mov edi, edx
    xor eax, eax
    mov ecx, 8
    rep stosd
    pop edi
    mov dword ptr [edx - 4], syscall_return     ; popad; iretd
    sub edx, 4
    mov [edi + TCB_KSP], edx
    ret

; thread_cancel: esi = TCB.  An IPC it is blocked in fails (RECANCELED or SECANCELED) and it
; becomes ready.  Clobbers eax, edx.
thread_cancel:
    mov eax, [esi + TCB_STATE]
    cmp eax, TS_WAIT_SEND
    je tcan_send
    cmp eax, TS_WAIT_RECV
    jb tcan_none
    cmp eax, TS_WAIT_PF
    ja tcan_none
    mov dword ptr [esi + TCB_RES_DOPE], L4_IPC_RECANCELED
    jmp thread_wake
tcan_send:
    call sendq_remove
    mov dword ptr [esi + TCB_IPC_STATUS], L4_IPC_SECANCELED
    jmp thread_wake
tcan_none:
    ret

; thread_delete: esi = TCB (not the current thread).  Its IPC is cancelled, threads queued
; to send to it fail with ENOT_EXISTENT, and it disappears.  Clobbers eax, edx.
thread_delete:
    call lipc_delete                    ; a long IPC it is locked in (longipc.asm)
    call thread_cancel
td_senders:
    mov eax, [esi + TCB_SENDQ]
    test eax, eax
    jz td_senders_done
    push esi
    mov esi, eax
    call sendq_remove
    mov dword ptr [esi + TCB_IPC_STATUS], L4_IPC_ENOT_EXISTENT
    call thread_wake
    pop esi
    jmp td_senders
td_senders_done:
    call timeout_remove
    cmp dword ptr [esi + TCB_QUEUED], 0
    je td_unqueued
    call ready_remove
td_unqueued:
    mov dword ptr [esi + TCB_STATE], TS_DEAD
    mov dword ptr [esi + TCB_ID_LO], 0
    mov dword ptr [esi + TCB_ID_HI], 0
    ret

; lthread_ex_regs (EAX = lthread | flags, ECX = esp, EDX = eip, ESI:EDI = pager, EBX:EBP =
; preempter; -1 / the invalid ID = unchanged).  A thread of the caller's own task: read its
; user EFLAGS, ESP, EIP, pager and preempter (returned in EAX, ECX, EDX, ESI:EDI, EBX:EBP),
; cancel its IPC (unless L4_EXREGS_NO_CANCEL), set the new values.  A thread that does not
; exist is created if ESP and EIP are given (pager: the given one, else the caller's;
; priority: the caller's); one killed by an exception is restarted the same way.
; l4emu: with L4_EXREGS_EXC_HANDLER EBX:EBP are the exception handler, with L4_EXREGS_TLS the
; TLS segment (base : limit word).
sys_lthread_ex_regs:
    mov eax, [ebp + TCB_TASK]
    mov edx, [ebx + R_EAX]
    and edx, L4_ID_LTHREAD_MASK
    call tcb_of
    mov esi, eax                        ; the target
    cmp dword ptr [esi + TCB_ID_LO], 0
    je exr_create
    ; old values
    lea edi, [esi + TCB_IRET]
    mov eax, [edi + 8]
    mov [exr_old], eax                  ; EFLAGS
    mov eax, [edi + 12]
    mov [exr_old + 4], eax              ; ESP
    mov eax, [edi]
    mov [exr_old + 8], eax              ; EIP
    mov eax, [esi + TCB_PAGER_LO]
    mov [exr_old + 12], eax
    mov eax, [esi + TCB_PAGER_HI]
    mov [exr_old + 16], eax
    mov eax, [esi + TCB_PREEMPT_LO]
    mov edx, [esi + TCB_PREEMPT_HI]
    test dword ptr [ebx + R_EAX], L4_EXREGS_EXC_HANDLER
    jz exr_old_tls
    mov eax, [esi + TCB_EXCH_LO]        ; extension: the exception handler instead
    mov edx, [esi + TCB_EXCH_HI]
exr_old_tls:
    test dword ptr [ebx + R_EAX], L4_EXREGS_TLS
    jz exr_old_pre
    mov eax, [esi + TCB_TLS_BASE]       ; extension: the TLS segment instead
    mov edx, [esi + TCB_TLS_LIMIT]
exr_old_pre:
    mov [exr_old + 20], eax
    mov [exr_old + 24], edx
    cmp dword ptr [esi + TCB_STATE], TS_DEAD
    je exr_dead
    cmp esi, ebp
    je exr_set
    test dword ptr [ebx + R_EAX], L4_EXREGS_NO_CANCEL
    jnz exr_set
    call thread_cancel
exr_set:
    mov eax, [ebx + R_ECX]
    cmp eax, -1
    je exr_eip
    mov [edi + 12], eax
exr_eip:
    mov eax, [ebx + R_EDX]
    cmp eax, -1
    je exr_ids
    mov [edi], eax
    jmp exr_ids
exr_dead:                               ; killed earlier: restart it if told where
    mov ecx, [ebx + R_ECX]
    mov eax, [ebx + R_EDX]
    cmp ecx, -1
    je exr_ids
    cmp eax, -1
    je exr_ids
    push edi
    mov edi, esi
    call thread_frame_init
    pop edi
    call thread_wake
exr_ids:
    mov eax, [ebx + R_ESI]
    mov edx, [ebx + R_EDI]
    mov ecx, eax
    and ecx, edx
    cmp ecx, -1
    je exr_preempter
    mov [esi + TCB_PAGER_LO], eax
    mov [esi + TCB_PAGER_HI], edx
exr_preempter:
    mov eax, [ebx + R_EBX]
    mov edx, [ebx + R_EBP]
    mov ecx, eax
    and ecx, edx
    cmp ecx, -1
    je exr_out
    call exr_store_pre
exr_out:
    mov eax, [exr_old]
    mov [ebx + R_EAX], eax
    mov eax, [exr_old + 4]
    mov [ebx + R_ECX], eax
    mov eax, [exr_old + 8]
    mov [ebx + R_EDX], eax
    mov eax, [exr_old + 12]
    mov [ebx + R_ESI], eax
    mov eax, [exr_old + 16]
    mov [ebx + R_EDI], eax
    mov eax, [exr_old + 20]
    mov [ebx + R_EBX], eax
    mov eax, [exr_old + 24]
    mov [ebx + R_EBP], eax
    ret
exr_create:
    mov dword ptr [exr_old], 0
    mov eax, -1
    mov [exr_old + 4], eax
    mov [exr_old + 8], eax
    mov [exr_old + 12], eax
    mov [exr_old + 16], eax
    mov [exr_old + 20], eax
    mov [exr_old + 24], eax
    mov ecx, [ebx + R_ECX]
    mov edx, [ebx + R_EDX]
    cmp ecx, -1
    je exr_out
    cmp edx, -1
    je exr_out
    push ebx
    push ebp
    mov esi, [ebx + R_ESI]              ; pager: given or the caller's
    mov edi, [ebx + R_EDI]
    mov eax, esi
    and eax, edi
    cmp eax, -1
    jne exr_pager_ok
    mov esi, [ebp + TCB_PAGER_LO]
    mov edi, [ebp + TCB_PAGER_HI]
exr_pager_ok:
    mov eax, [ebp + TCB_TASK]
    mov ebx, [ebx + R_EAX]
    and ebx, L4_ID_LTHREAD_MASK
    mov ebp, [ebp + TCB_PRIO]
    call thread_create
    pop ebp
    pop ebx
    test eax, eax
    jz exr_out                          ; no kernel memory: nothing created
    mov esi, eax
    mov eax, [ebx + R_EBX]              ; a preempter, if given
    mov edx, [ebx + R_EBP]
    mov ecx, eax
    and ecx, edx
    cmp ecx, -1
    je exr_out
    call exr_store_pre
    jmp exr_out

; exr_store_pre: esi = TCB, eax:edx = a thread ID: the preempter, or with
; L4_EXREGS_EXC_HANDLER in the caller's EAX (ebx = its frame) the exception handler, or with
; L4_EXREGS_TLS the TLS segment's base:limit word (desc.asm tls_set; refused: unchanged).
exr_store_pre:
    test dword ptr [ebx + R_EAX], L4_EXREGS_TLS
    jnz esp_tls
    test dword ptr [ebx + R_EAX], L4_EXREGS_EXC_HANDLER
    jnz esp_exch
    mov [esi + TCB_PREEMPT_LO], eax
    mov [esi + TCB_PREEMPT_HI], edx
    ret
esp_exch:
    mov [esi + TCB_EXCH_LO], eax
    mov [esi + TCB_EXCH_HI], edx
    ret
esp_tls:
    push edi
    mov edi, esi
    call tls_set
    pop edi
    ret

.section .data
.align 4
exr_old:
    .long 0, 0, 0, 0, 0, 0, 0

; kernel/trap.asm: processor exceptions.
;
; A user thread's exception (other than the page faults ipc.asm turns into IPC and the int3
; of kdebug.asm) is an IPC to its exception handler if it has one (exc_user below); without
; one it kills the thread: the kernel prints one line naming the thread, the
; exception, its error code and EIP, marks the thread dead (its ID stays: thread_schedule
; reports state 0xF, and lthread_ex_regs can restart it) and runs another thread.  Hostile
; code - privileged instructions, denied ports (#GP from the I/O bitmap), `int n` at a DPL-0
; vector, kernel addresses - ends here, never as a machine stop.
;
; One #UD is a service: `lock; nop` (F0 90) returns the KIP's address in EAX, as V2's
; l4_kernel_interface() expects.
;
; In kernel mode an exception is a bug (panic with the registers), except a single-step trap
; at a call-gate entry (TF set by the user is not cleared by a call gate), the #TS of an
; iretd with the NT flag a user set before a call gate (likewise), and #PF in a user-memory
; access with a fixup (ipc.asm).

.section .text
exc_de:
    push 0
    push 0
    jmp exc_common
exc_db:
    push 0
    push 1
    jmp exc_common
exc_nmi:
    iretd
exc_of:
    push 0
    push 4
    jmp exc_common
exc_br:
    push 0
    push 5
    jmp exc_common
exc_nm:
    push 0
    push 7
    jmp exc_common
exc_df:
    push 8
    jmp exc_common
exc_cso:
    push 0
    push 9
    jmp exc_common
exc_ts:
    push 10
    jmp exc_common
exc_np:
    push 11
    jmp exc_common
exc_ss:
    push 12
    jmp exc_common
exc_gp:
    push 13
    jmp exc_common
exc_mf:
    push 0
    push 16
    jmp exc_common
exc_ac:
    push 17
    jmp exc_common
exc_mc:
    push 0
    push 18
    jmp exc_common
exc_xm:
    push 0
    push 19
    jmp exc_common
unexpected_vector:
    push 0
    push 255
    jmp exc_common

; exc_common: [esp] = vector, then the error code, then the hardware frame.
exc_common:
    pushad
    cld
    mov cx, L4_SEL_UDATA
    mov ds, cx
    mov es, cx
    mov eax, [esp + 32]                 ; vector
    mov edx, [esp + 36]                 ; error code
    mov ecx, [esp + 40]                 ; EIP
    test byte ptr [esp + 44], 3         ; CS: from user mode?
    jz exc_kernel
    jmp exc_user
exc_kernel:
    cmp eax, 1
    je exc_kernel_db
    cmp eax, 10                         ; #TS(0) at an iretd with NT set: the task return of
    jne kernel_exception                ;  an NT the user set before a call gate (gates keep
    test dword ptr [esp + 48], EFLAGS_NT    ; EFLAGS; fastpath.asm does not popfd): clear NT
    jz kernel_exception                 ;  and run the iretd again
    test edx, edx
    jnz kernel_exception
    cmp byte ptr [ecx], 0xCF
    jne kernel_exception
    and dword ptr [esp + 48], 0xFFFFBFFF
    jmp exc_kernel_return
exc_kernel_db:
    and dword ptr [esp + 48], 0xFFFFFEFF    ; #DB in the kernel: clear TF and go on
exc_kernel_return:
    popad
    add esp, 8
    iretd

exc_ud:
    push 0
    push 6
    pushad
    cld
    mov cx, L4_SEL_UDATA
    mov ds, cx
    mov es, cx
    test byte ptr [esp + 44], 3
    jz ud_kernel
    mov esi, [esp + 40]                 ; EIP
    call uread_byte
    jc ud_kill
    cmp al, 0xF0                        ; lock
    jne ud_kill
    inc esi
    call uread_byte
    jc ud_kill
    cmp al, 0x90                        ; nop
    jne ud_kill
    mov dword ptr [esp + R_EAX], L4_KIP_ADDR
    add dword ptr [esp + 40], 2
    popad
    add esp, 8
    iretd
ud_kill:
    mov eax, 6
    xor edx, edx
    mov ecx, [esp + 40]
    jmp exc_user
ud_kernel:
    mov eax, 6
    xor edx, edx
    mov ecx, [esp + 40]
    jmp kernel_exception

; -- exceptions as IPC (l4emu extension, docs/abi.md) ----------------------------------------
; exc_user: eax = vector, edx = error code, ecx = EIP of the current (user) thread; esp = its
; pushad frame, then vector, error code and the iret frame (EXC_REGS in the TCB).  A thread
; with an exception handler calls it: dwords 0/1 = vector and error code, and ipc_transfer
; writes the whole frame (exc_deliver_frame) into the handler's message buffer.  The thread
; waits for the reply in TS_WAIT_PF (the fast path never delivers to it); a register-frame
; reply (exc_send_check) has already changed its registers when exc_resume returns to it.
; Without a handler, or when the handler does not exist, the thread is killed as before.
exc_user:
    mov ebp, esp
    and ebp, 0xFFFFFC00
    mov ebx, [ebp + TCB_EXCH_LO]
    mov esi, [ebp + TCB_EXCH_HI]
    mov edi, ebx
    or edi, esi
    jz thread_kill_exc                  ; no handler
    cmp ebx, [ebp + TCB_ID_LO]
    jne eu_call
    cmp esi, [ebp + TCB_ID_HI]
    je thread_kill_exc                  ; its own handler: it could never answer
eu_call:
    mov [ebp + TCB_MSG0], eax
    mov dword ptr [ebp + TCB_MSG1], EXC_MSG1    ; the error code is in the frame (ipc.asm)
    mov [ebp + TCB_DEST_LO], ebx
    mov [ebp + TCB_DEST_HI], esi
    mov dword ptr [ebp + TCB_SND_DESC], EXC_SND_DESC
    mov dword ptr [ebp + TCB_RCV_DESC], L4_IPC_SHORT_MSG     ; closed receive from the handler
    mov dword ptr [ebp + TCB_TIMEOUT], L4_IPC_NEVER
    mov [ebp + TCB_CONT_ESP], esp
    mov dword ptr [ebp + TCB_CONT_EIP], exc_resume
    mov dword ptr [ebp + TCB_RCV_STATE], TS_WAIT_PF
    inc dword ptr [exc_ipc_count]
    call ipc_do
exc_resume:                             ; esp = the register frame (vector, error code above)
    mov ebp, esp
    and ebp, 0xFFFFFC00
    mov eax, [ebp + TCB_RES_DOPE]
    and eax, L4_IPC_ERROR_MASK
    cmp eax, L4_IPC_ENOT_EXISTENT
    je exc_no_handler
    popad                               ; any other outcome (a reply, a cancel) resumes it
    add esp, 8
    iretd
exc_no_handler:
    mov eax, [esp + 32]
    mov edx, [esp + 36]
    mov ecx, [esp + 40]
    jmp thread_kill_exc

; exc_send_check: from lipc_send (longipc.asm) for a send descriptor above 3; eax = it,
; ebp = the sender (the current thread).  CF clear: send it as a short message; CF set:
; SEMSGCUT.
;   - EXC_SND_DESC from the exception path itself (a user cannot pass it: ipc_slow's
;     continuation is ipc_resume_user) is the exception message;
;   - a V2 message buffer (4-aligned, user) sent to edi, a thread waiting for this sender's
;     answer to its exception (lipc_send found it so), is the handler's register-frame reply
;     if its send dope has L4_EXC_FRAME_DWORDS dwords: dwords 2..11 become the thread's EIP,
;     ESP, EFLAGS (user bits) and general registers, read from the current space (a fault:
;     SEMSGCUT, nothing changed); with L4_EXC_TLS_DWORDS dwords, 12..13 also set its TLS
;     segment (refused: SEMSGCUT).  Applied, it is a short message from then on: the
;     sender's TCB_SND_DESC becomes L4_IPC_SHORT_MSG.
; Clobbers eax, ecx, edx, esi.
exc_send_check:
    cmp eax, EXC_SND_DESC
    jne esc_reply
    mov ecx, exc_resume
    cmp [ebp + TCB_CONT_EIP], ecx
    jne esc_fail
    clc
    ret
esc_reply:
    test al, 3
    jnz esc_fail
    cmp eax, L4_USER_LIMIT - L4_MSG_DWORD0 - 4 * L4_EXC_FRAME_DWORDS
    ja esc_fail
    mov esi, eax                        ; the buffer
    mov ecx, esc_fault
    mov [uaccess_fixup], ecx
    mov eax, [esi + L4_MSG_SND_DOPE]
    shr eax, L4_MSG_DOPE_DWORDS_SHIFT
    cmp eax, L4_EXC_FRAME_DWORDS
    jb esc_fault
    mov [exc_left], eax                 ; dwords in the reply
    add esi, L4_MSG_DWORD0 + 4 * L4_EXC_EIP
    mov edx, exc_tmp
    mov ecx, L4_EXC_FRAME_DWORDS - L4_EXC_EIP
esc_copy:
    mov eax, [esi]
    mov [edx], eax
    add esi, 4
    add edx, 4
    loop esc_copy
    cmp dword ptr [exc_left], L4_EXC_TLS_DWORDS
    jb esc_regs
    cmp esi, L4_USER_LIMIT - 8          ; esi = dword L4_EXC_TLS_BASE: it and the limit word
    ja esc_fault
    mov eax, [esi]
    mov edx, [esi + 4]
    mov dword ptr [uaccess_fixup], 0
    call tls_set                        ; edi's TLS segment (refused: nothing changes)
    jc esc_fail
esc_regs:
    mov dword ptr [uaccess_fixup], 0
    mov esi, exc_tmp
    mov eax, [esi]
    mov [edi + TCB_IRET], eax           ; EIP
    mov eax, [esi + 4]
    mov [edi + TCB_IRET + 12], eax      ; ESP
    mov eax, [esi + 8]
    and eax, L4_EXC_EFLAGS_USER
    or eax, USER_EFLAGS
    mov [edi + TCB_IRET + 8], eax       ; EFLAGS
    mov eax, [esi + 12]
    mov [edi + XR_EAX], eax
    mov eax, [esi + 16]
    mov [edi + XR_ECX], eax
    mov eax, [esi + 20]
    mov [edi + XR_EDX], eax
    mov eax, [esi + 24]
    mov [edi + XR_EBX], eax
    mov eax, [esi + 28]
    mov [edi + XR_EBP], eax
    mov eax, [esi + 32]
    mov [edi + XR_ESI], eax
    mov eax, [esi + 36]
    mov [edi + XR_EDI], eax
    mov dword ptr [ebp + TCB_SND_DESC], L4_IPC_SHORT_MSG
    clc
    ret
esc_fault:                              ; exc_pf resumes here after a fault
    mov dword ptr [uaccess_fixup], 0
esc_fail:
    stc
    ret

; exc_deliver_frame: from ipc_transfer (tail); esi = a thread sending its exception message,
; edi = the receiver, its results already set.  If the receiver's receive descriptor is a
; message buffer (bit 1 clear, address not 0) mapped writable in its space whose size dope
; allows L4_EXC_FRAME_DWORDS dwords, the frame goes there with the send dope, and the result
; dope says that many dwords; otherwise only dwords 0/1 arrive.  eax = 0.  Preserves ebx,
; esi, edi, ebp.
exc_deliver_frame:
    mov ecx, [esi + EXC_ERROR]          ; dword 1: the error code, from the frame
    mov [edi + TCB_RES_MSG1], ecx
    mov ecx, [edi + TCB_RCV_DESC]
    test cl, L4_IPC_RMAP
    jnz edf_none
    and ecx, 0xFFFFFFFC
    jz edf_none
    push ebx
    push ebp
    mov ebp, ecx                        ; the buffer, in the receiver's space
    lea eax, [ebp + L4_MSG_SIZE_DOPE]
    call exc_user_ptr
    jz edf_out
    mov ecx, [eax]
    shr ecx, L4_MSG_DOPE_DWORDS_SHIFT
    cmp ecx, L4_EXC_FRAME_DWORDS
    jb edf_out
    ; Usually the send dope and the 12 dwords (buffer + 8 ... + 59) share the size dope's
    ; page: write them there directly.  Else build the frame in exc_tmp and copy it one
    ; dword at a time.
    mov ecx, eax
    and ecx, 0xFFF
    cmp ecx, 0x1000 - 56
    ja edf_across
    mov ebx, eax                        ; the buffer's dwords at [ebx + 8 + 4 * i]
    mov dword ptr [ebx + 4], L4_EXC_FRAME_DWORDS << L4_MSG_DOPE_DWORDS_SHIFT   ; send dope
    call edf_build
    mov dword ptr [edi + TCB_RES_DOPE], L4_EXC_FRAME_DWORDS << L4_MSG_DOPE_DWORDS_SHIFT
    jmp edf_out
edf_across:
    mov ebx, exc_tmp
    sub ebx, 8
    call edf_build
    add ebx, 8
    mov dword ptr [exc_left], L4_EXC_FRAME_DWORDS
    push ebp
    add ebp, L4_MSG_DWORD0
edf_word:                               ; one dword at a time: the buffer may cross pages
    mov eax, ebp
    call exc_user_ptr
    jz edf_out_pop
    mov ecx, [ebx]
    mov [eax], ecx
    add ebx, 4
    add ebp, 4
    dec dword ptr [exc_left]
    jnz edf_word
    pop ebp
    lea eax, [ebp + L4_MSG_SND_DOPE]
    call exc_user_ptr
    jz edf_out
    mov dword ptr [eax], L4_EXC_FRAME_DWORDS << L4_MSG_DOPE_DWORDS_SHIFT
    mov dword ptr [edi + TCB_RES_DOPE], L4_EXC_FRAME_DWORDS << L4_MSG_DOPE_DWORDS_SHIFT
edf_out:
    pop ebp
    pop ebx
    jmp edf_none
edf_out_pop:
    pop ebp
    jmp edf_out
edf_none:
    xor eax, eax
    ret

; edf_build: esi = the thread in its exception: its frame to [ebx + 8 + 4 * i], i = 0..11.
edf_build:
    mov eax, [esi + TCB_MSG0]
    mov [ebx + 8], eax                  ; trap
    mov eax, [esi + EXC_ERROR]
    mov [ebx + 12], eax                 ; error code
    mov eax, [esi + TCB_IRET]
    mov [ebx + 16], eax                 ; EIP
    mov eax, [esi + TCB_IRET + 12]
    mov [ebx + 20], eax                 ; ESP
    mov eax, [esi + TCB_IRET + 8]
    mov [ebx + 24], eax                 ; EFLAGS
    mov eax, [esi + XR_EAX]
    mov [ebx + 28], eax
    mov eax, [esi + XR_ECX]
    mov [ebx + 32], eax
    mov eax, [esi + XR_EDX]
    mov [ebx + 36], eax
    mov eax, [esi + XR_EBX]
    mov [ebx + 40], eax
    mov eax, [esi + XR_EBP]
    mov [ebx + 44], eax
    mov eax, [esi + XR_ESI]
    mov [ebx + 48], eax
    mov eax, [esi + XR_EDI]
    mov [ebx + 52], eax
    ret

; exc_user_ptr: eax = a 4-aligned user address in the space of the thread edi -> eax = the
; kernel's address of it (physical window) when it is mapped user-writable in RAM the window
; covers, ZF clear; else eax = 0, ZF set.  Clobbers ecx, edx.
exc_user_ptr:
    cmp eax, L4_USER_LIMIT
    jae eup_none
    mov edx, [edi + TCB_SPACE]
    test edx, edx
    jz eup_none
    mov ecx, eax
    shr ecx, 22
    mov ecx, [edx + ecx*4 + KOFF]
    mov edx, ecx
    and edx, PTE_P | PTE_W | PTE_U
    cmp edx, PTE_P | PTE_W | PTE_U
    jne eup_none
    test ecx, PTE_PS
    jnz eup_super
    and ecx, PAGE_MASK
    mov edx, eax
    shr edx, 12
    and edx, 0x3FF
    mov ecx, [ecx + edx*4 + KOFF]
    mov edx, ecx
    and edx, PTE_P | PTE_W | PTE_U
    cmp edx, PTE_P | PTE_W | PTE_U
    jne eup_none
    and ecx, PAGE_MASK
    and eax, 0xFFF
    jmp eup_have
eup_super:
    and ecx, SUPER_MASK
    and eax, 0x3FFFFF
eup_have:
    add eax, ecx
    cmp eax, L4_PHYS_WINDOW
    jae eup_none
    add eax, KOFF                       ; never 0: ZF clear
    ret
eup_none:
    xor eax, eax
    ret

; thread_kill_exc: eax = vector, edx = error code, ecx = EIP of the current (user) thread.
; Reports, kills it and runs another thread.  Does not return.
thread_kill_exc:
    mov ebp, esp
    and ebp, 0xFFFFFC00
    push ecx
    push edx
    push eax
    mov esi, msg_killed
    call kputs
    mov eax, [ebp + TCB_ID_LO]
    call kput_tid
    mov esi, msg_killed_by
    call kputs
    mov eax, [esp]
    call kput_exc_name
    mov esi, msg_error
    call kputs
    mov eax, [esp + 4]
    call kputhex
    mov esi, msg_at_eip
    call kputs
    mov eax, [esp + 8]
    call kputhex
    cmp dword ptr [esp], 14
    jne tke_nl
    mov esi, msg_address
    call kputs
    mov eax, cr2
    call kputhex
tke_nl:
    call kputnl
    add esp, 12
    mov dword ptr [ebp + TCB_STATE], TS_DEAD
    inc dword ptr [killed_count]
    call sched_pick                     ; the dead thread leaves its ready list lazily
    jmp resume_tcb

; kernel_exception: eax = vector, edx = error code, ecx = EIP.  A kernel bug: report, stop.
kernel_exception:
    push ecx
    push edx
    push eax
    mov esi, msg_kexc
    call kputs
    mov eax, [esp]
    call kput_exc_name
    mov esi, msg_error
    call kputs
    mov eax, [esp + 4]
    call kputhex
    mov esi, msg_at_eip
    call kputs
    mov eax, [esp + 8]
    call kputhex
    mov esi, msg_address
    call kputs
    mov eax, cr2
    call kputhex
    call kputnl
    mov esi, msg_kexc_panic
    jmp panic

; kput_exc_name: eax = vector.
kput_exc_name:
    cmp eax, 19
    ja ken_other
    lea esi, [eax*4]
    add esi, exc_names
    jmp kputs
ken_other:
    mov esi, msg_vector
    jmp kputs

.section .rodata
exc_names:                              ; 4 bytes each
    .asciz "#DE"
    .asciz "#DB"
    .asciz "NMI"
    .asciz "#BP"
    .asciz "#OF"
    .asciz "#BR"
    .asciz "#UD"
    .asciz "#NM"
    .asciz "#DF"
    .asciz "#09"
    .asciz "#TS"
    .asciz "#NP"
    .asciz "#SS"
    .asciz "#GP"
    .asciz "#PF"
    .asciz "#15"
    .asciz "#MF"
    .asciz "#AC"
    .asciz "#MC"
    .asciz "#XM"
msg_vector:
    .asciz "int n"
msg_killed:
    .asciz "L4: thread "
msg_killed_by:
    .asciz " killed: "
msg_error:
    .asciz " error "
msg_at_eip:
    .asciz " at eip "
msg_address:
    .asciz " address "
msg_kexc:
    .asciz "L4: KERNEL EXCEPTION "
msg_kexc_panic:
    .asciz "exception in the kernel"

.section .data
.align 4
killed_count: .long 0
exc_ipc_count: .long 0                  ; exception messages sent (for tools)
exc_left: .long 0
exc_tmp: .space 4 * L4_EXC_FRAME_DWORDS

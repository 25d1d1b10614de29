; kernel/trap.asm: processor exceptions.
;
; A user thread's exception (other than the page faults ipc.asm turns into IPC and the int3
; of kdebug.asm) kills the thread: the kernel prints one line naming the thread, the
; exception, its error code and EIP, marks the thread dead (its ID stays: thread_schedule
; reports state 0xF, and lthread_ex_regs can restart it) and runs another thread.  Hostile
; code - privileged instructions, denied ports (#GP from the I/O bitmap), `int n` at a DPL-0
; vector, kernel addresses - ends here, never as a machine stop.
;
; One #UD is a service: `lock; nop` (F0 90) returns the KIP's address in EAX, as V2's
; l4_kernel_interface() expects.
;
; In kernel mode an exception is a bug (panic with the registers), except a single-step trap
; at a call-gate entry (TF set by the user is not cleared by a call gate) and #PF in a
; user-memory access with a fixup (ipc.asm).

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
    jmp thread_kill_exc
exc_kernel:
    cmp eax, 1
    jne kernel_exception
    and dword ptr [esp + 48], 0xFFFFFEFF    ; #DB in the kernel: clear TF and go on
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
    jmp thread_kill_exc
ud_kernel:
    mov eax, 6
    xor edx, edx
    mov ecx, [esp + 40]
    jmp kernel_exception

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

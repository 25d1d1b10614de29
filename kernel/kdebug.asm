; kernel/kdebug.asm: the kernel console (COM1, polled) and the V2 int3 kernel-debugger
; interface (DESIGN D7; numbers as in TU Dresden's l4sys kdebug.h).
;
; After `int3` the kernel looks at the bytes following it in the user's code:
;   3C nn  (`cmp al, nn`)        console operation nn; EIP moves past the two bytes:
;            0 outchar (AL)  1 outnstring (EAX = text, EBX = length)  2 outstring (EAX)
;            5/6/7/8/9 outhex32/20/16/12/8 (EAX)  11 outdec (EAX)  13 inchar (-> EAX, -1 if
;            none waiting)  0x40 power off with status EAX (l4emu; sigma0 and root task only)
;   EB ll  (`jmp` over ll bytes)  enter_kdebug: print the text, then enter the debugger
;   90 EB ll (`nop; jmp ...`)     kd_display: print the text only
;   anything else                 a breakpoint: report it and enter the debugger
; "Enter the debugger" writes to port L4_KDEBUG_PORT: the emulator stops there (Stop.KDEBUG)
; and its debugger takes over; `l4emu boot` notes it and goes on.  The kernel reads user
; memory only below L4_USER_LIMIT and through uread_byte, whose faults return an error
; instead of a page-fault IPC (text not mapped yet is cut short).

.equ KD_MAX_STRING, 4096

.section .text
serial_init:
    mov dx, COM1 + 1                    ; IER: no interrupts
    xor al, al
    out dx, al
    mov dx, COM1 + 3                    ; LCR: 8N1
    mov al, 3
    out dx, al
    ret

; kputc: al = character.  Preserves all.
kputc:
    push edx
    push eax
    mov dx, COM1 + 5
kputc_wait:
    in al, dx
    test al, 0x20                       ; THR empty
    jz kputc_wait
    pop eax
    mov dx, COM1
    out dx, al
    pop edx
    ret

; kputs: esi = NUL-terminated kernel string.  Clobbers esi.
kputs:
    push eax
kputs_next:
    mov al, [esi]
    test al, al
    jz kputs_done
    call kputc
    inc esi
    jmp kputs_next
kputs_done:
    pop eax
    ret

kputnl:
    push eax
    mov al, 10
    call kputc
    pop eax
    ret

; kputhex: eax as 0x%08x.  kputhexn: eax, ecx digits, no prefix.  Preserve all.
kputhex:
    push eax
    mov al, 0x30
    call kputc
    mov al, 0x78
    call kputc
    pop eax
    push ecx
    mov ecx, 8
    call kputhexn
    pop ecx
    ret
kputhexn:
    push eax
    push ecx
    push edx
    mov edx, eax
    mov eax, 8
    sub eax, ecx
    shl eax, 2
    push ecx
    mov ecx, eax
    rol edx, cl                         ; skip the digits not printed
    pop ecx
khn_digit:
    rol edx, 4
    mov al, dl
    and al, 15
    add al, 0x30
    cmp al, 0x39
    jbe khn_out
    add al, 39
khn_out:
    call kputc
    loop khn_digit
    pop edx
    pop ecx
    pop eax
    ret

; kputdec: eax as a signed decimal.  Preserves all.
kputdec:
    push eax
    push ebx
    push ecx
    push edx
    test eax, eax
    jns kd_dec_pos
    push eax
    mov al, 0x2D
    call kputc
    pop eax
    neg eax
kd_dec_pos:
    mov ebx, 10
    xor ecx, ecx
kd_dec_div:
    xor edx, edx
    div ebx
    push edx
    inc ecx
    test eax, eax
    jnz kd_dec_div
kd_dec_out:
    pop eax
    add al, 0x30
    call kputc
    loop kd_dec_out
    pop edx
    pop ecx
    pop ebx
    pop eax
    ret

; kput_tid: eax = thread ID (low word), printed as task.lthread in hex.  Preserves all.
kput_tid:
    push eax
    push ecx
    push eax
    shr eax, L4_ID_TASK_SHIFT
    and eax, L4_ID_TASK_MASK
    mov ecx, 2
    call kputhexn
    mov al, 0x2E
    call kputc
    pop eax
    shr eax, L4_ID_LTHREAD_SHIFT
    and eax, L4_ID_LTHREAD_MASK
    mov ecx, 2
    call kputhexn
    pop ecx
    pop eax
    ret

; uread_byte: esi = user address -> al (eax's other bits undefined); CF set when it is not
; readable user memory.
uread_byte:
    cmp esi, L4_USER_LIMIT
    jae ur_fail
    mov eax, ur_fault                   ; (keystone cannot store a label into a label)
    mov [uaccess_fixup], eax
    mov al, [esi]
    mov dword ptr [uaccess_fixup], 0
    clc
    ret
ur_fault:                               ; exc_pf resumes here after a fault
ur_fail:
    stc
    ret

; kputs_user: esi = user text, ecx = at most this many bytes; stops at NUL.  Clobbers eax,
; ecx, esi.
kputs_user:
    jecxz ku_done
    call uread_byte
    jc ku_done
    test al, al
    jz ku_done
    call kputc
    inc esi
    dec ecx
    jmp kputs_user
ku_done:
    ret

; kdebug_int3: the int3 gate (DPL 3).
kdebug_int3:
    pushad
    cld
    mov cx, L4_SEL_UDATA
    mov ds, cx
    mov es, cx
    mov ebp, esp
    and ebp, 0xFFFFFC00
    test byte ptr [esp + R_CS], 3
    jz kd_breakpoint                    ; an int3 in the kernel: just report it
    mov esi, [esp + R_EIP]
    call uread_byte
    jc kd_breakpoint
    cmp al, 0x3C
    je kd_op
    cmp al, 0xEB
    je kd_enter
    cmp al, 0x90
    je kd_display
kd_breakpoint:
    mov esi, msg_kd_bp
    call kputs
    mov eax, [ebp + TCB_ID_LO]
    call kput_tid
    mov esi, msg_at_eip
    call kputs
    mov eax, [esp + R_EIP]
    dec eax
    call kputhex
    call kputnl
    call kd_enter_debugger
    jmp kd_out
kd_enter:                               ; int3; jmp 1f; .ascii "text"; 1:
    inc esi
    call uread_byte
    jc kd_breakpoint
    movzx ecx, al
    inc esi
    push esi
    mov esi, msg_kd_enter
    call kputs
    pop esi
    call kputs_user
    call kputnl
    call kd_enter_debugger
    jmp kd_out
kd_display:                             ; int3; nop; jmp 1f; .ascii "text"; 1:
    inc esi
    call uread_byte
    jc kd_breakpoint
    cmp al, 0xEB
    jne kd_breakpoint
    inc esi
    call uread_byte
    jc kd_breakpoint
    movzx ecx, al
    inc esi
    call kputs_user
    jmp kd_out
kd_op:
    inc esi
    call uread_byte
    jc kd_breakpoint
    add dword ptr [esp + R_EIP], 2
    movzx eax, al
    mov edx, [esp + R_EAX]
    cmp eax, L4_KDEBUG_OUTCHAR
    je kd_outchar
    cmp eax, L4_KDEBUG_OUTNSTRING
    je kd_outnstring
    cmp eax, L4_KDEBUG_OUTSTRING
    je kd_outstring
    cmp eax, L4_KDEBUG_OUTHEX32
    je kd_hex8
    cmp eax, L4_KDEBUG_OUTHEX20
    je kd_hex5
    cmp eax, L4_KDEBUG_OUTHEX16
    je kd_hex4
    cmp eax, L4_KDEBUG_OUTHEX12
    je kd_hex3
    cmp eax, L4_KDEBUG_OUTHEX8
    je kd_hex2
    cmp eax, L4_KDEBUG_OUTDEC
    je kd_outdec
    cmp eax, L4_KDEBUG_INCHAR
    je kd_inchar
    cmp eax, L4_KDEBUG_POWEROFF
    je kd_poweroff
    jmp kd_out                          ; unknown operations do nothing
kd_outchar:
    mov al, dl
    call kputc
    jmp kd_out
kd_outnstring:
    mov esi, edx
    mov ecx, [esp + R_EBX]
    cmp ecx, KD_MAX_STRING
    jbe kd_nstr
    mov ecx, KD_MAX_STRING
kd_nstr:
    call kputs_user
    jmp kd_out
kd_outstring:
    mov esi, edx
    mov ecx, KD_MAX_STRING
    call kputs_user
    jmp kd_out
kd_hex8:
    mov ecx, 8
    jmp kd_hex
kd_hex5:
    mov ecx, 5
    jmp kd_hex
kd_hex4:
    mov ecx, 4
    jmp kd_hex
kd_hex3:
    mov ecx, 3
    jmp kd_hex
kd_hex2:
    mov ecx, 2
kd_hex:
    mov eax, edx
    call kputhexn
    jmp kd_out
kd_outdec:
    mov eax, edx
    call kputdec
    jmp kd_out
kd_inchar:
    mov dx, COM1 + 5
    in al, dx
    test al, 1                          ; data ready
    jz kd_no_char
    mov dx, COM1
    in al, dx
    movzx eax, al
    mov [esp + R_EAX], eax
    jmp kd_out
kd_no_char:
    mov dword ptr [esp + R_EAX], -1
    jmp kd_out
kd_poweroff:
    cmp dword ptr [ebp + TCB_TASK], L4_ROOT_TASK
    ja kd_out
    mov eax, edx
    out EXIT_PORT, al                   ; the emulator stops here
kd_out:
    popad
    iretd

; kd_enter_debugger: tell the machine (port L4_KDEBUG_PORT); it stops if a debugger wants to.
kd_enter_debugger:
    push eax
    push edx
    mov dx, L4_KDEBUG_PORT
    mov al, 3
    out dx, al
    pop edx
    pop eax
    ret

; panic: esi = message.  Report, enter the debugger, stop (hlt with interrupts off).
panic:
    cli
    push esi
    mov esi, msg_panic
    call kputs
    pop esi
    call kputs
    call kputnl
    call kd_enter_debugger
panic_halt:
    hlt
    jmp panic_halt

.section .rodata
msg_panic:
    .asciz "L4: KERNEL PANIC: "
msg_kd_bp:
    .asciz "L4: kdebug: breakpoint in thread "
msg_kd_enter:
    .asciz "L4: kdebug: "

.section .data
.align 4
uaccess_fixup: .long 0

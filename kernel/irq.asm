; kernel/irq.asm: interrupt hardware.  The 8259A pair (IRQ 0-15 at vectors 0x20-0x2F, all
; masked but the timer) and the 8254's channel 0 as the kernel's clock: a tick every
; L4_TICK_US (divisor L4_PIT_DIVISOR of 1.193182 MHz, 999.85 us).  A tick advances the KIP
; clock, expires IPC timeouts and lets the scheduler decide (sched.asm).

.section .text
irq_init:
    mov al, 0x11                        ; ICW1: edge, cascade, ICW4 follows
    out PIC1_CMD, al
    out PIC2_CMD, al
    mov al, IRQ_BASE                    ; ICW2: vector bases
    out PIC1_DATA, al
    mov al, IRQ_BASE + 8
    out PIC2_DATA, al
    mov al, 4                           ; ICW3: the slave on IRQ 2
    out PIC1_DATA, al
    mov al, 2
    out PIC2_DATA, al
    mov al, 1                           ; ICW4: 8086 mode
    out PIC1_DATA, al
    out PIC2_DATA, al
    mov al, 0xFE                        ; only IRQ 0
    out PIC1_DATA, al
    mov al, 0xFF
    out PIC2_DATA, al
    mov al, 0x34                        ; channel 0, lobyte/hibyte, mode 2 (rate generator)
    out PIT_CMD, al
    mov ax, L4_PIT_DIVISOR
    out PIT_CH0, al
    mov al, ah
    out PIT_CH0, al
    mov eax, kip
    mov dword ptr [eax + L4_KIP_TICK_US], L4_TICK_US
    ret

irq0_entry:
    pushad
    cld
    mov cx, L4_SEL_UDATA
    mov ds, cx
    mov es, cx
    mov al, 0x20                        ; EOI first: a switch below may not come back soon
    out PIC1_CMD, al
    inc dword ptr [ticks]
    mov eax, kip
    add dword ptr [eax + L4_KIP_CLOCK], L4_TICK_US
    adc dword ptr [eax + L4_KIP_CLOCK + 4], 0
    call timeouts_expire
    call sched_tick
    popad
    iretd

; Any other IRQ (masked, or spurious): acknowledge and ignore.
irq_other:
    push eax
    mov al, 0x20
    out PIC2_CMD, al
    out PIC1_CMD, al
    pop eax
    iretd

; kernel/irq.asm: interrupt hardware.  The 8259A pair (IRQ 0-15 at vectors 0x20-0x2F, all
; masked but the timer and the lines user threads wait on: interrupts as IPC, below) and the
; 8254's channel 0 as the kernel's clock: a tick every
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

; -- interrupts as IPC (docs/abi.md "Interrupts") -------------------------------------------
; IRQ n (1-15 but 2, the cascade) is the thread ID low = n + 1, high = 0 (V2).  A thread
; attaches by a closed receive from it (irq_attach, from ipc.asm's receive phase) and waits
; there for the next interrupt: the line is unmasked only while its owner waits.  When it
; fires the kernel masks it, acknowledges it at the PIC and delivers an empty message from the
; interrupt's ID; the owner runs at once if it has a higher priority than the interrupted
; thread (or the CPU was idle).  An interrupt that finds its owner not waiting is pending
; (the line stays masked) and is delivered at the owner's next receive from it.
irq1_entry:
    push 1
    jmp irq_common
irq2_entry:
    push 2
    jmp irq_common
irq3_entry:
    push 3
    jmp irq_common
irq4_entry:
    push 4
    jmp irq_common
irq5_entry:
    push 5
    jmp irq_common
irq6_entry:
    push 6
    jmp irq_common
irq7_entry:
    push 7
    jmp irq_common
irq8_entry:
    push 8
    jmp irq_common
irq9_entry:
    push 9
    jmp irq_common
irq10_entry:
    push 10
    jmp irq_common
irq11_entry:
    push 11
    jmp irq_common
irq12_entry:
    push 12
    jmp irq_common
irq13_entry:
    push 13
    jmp irq_common
irq14_entry:
    push 14
    jmp irq_common
irq15_entry:
    push 15
irq_common:                             ; [esp] = the IRQ, then the hardware frame
    pushad
    cld
    mov cx, L4_SEL_UDATA
    mov ds, cx
    mov es, cx
    mov ebx, [esp + 32]
    mov eax, ebx
    call pic_mask
    mov al, 0x20
    cmp ebx, 8
    jb ic_eoi
    out PIC2_CMD, al
ic_eoi:
    out PIC1_CMD, al
    inc dword ptr [irq_count]
    mov ecx, irq_owner
    mov esi, [ecx + ebx*4]
    test esi, esi
    jz ic_pending
    lea eax, [ebx + IRQ_WAIT_BASE]
    cmp [esi + TCB_WAIT_FOR], eax
    jne ic_pending
    mov eax, [esi + TCB_STATE]
    cmp eax, TS_WAIT_RECV
    jb ic_pending
    cmp eax, TS_WAIT_RECV_TO
    ja ic_pending
    call irq_deliver
    call thread_wake
    mov ebp, esp
    and ebp, 0xFFFFFC00
    cmp ebp, [idle_tcb]
    je ic_switch
    test byte ptr [esp + 40], 3         ; interrupted user mode? (else a call-gate entry)
    jz ic_out
    mov eax, [esi + TCB_PRIO]
    cmp eax, [ebp + TCB_PRIO]
    jbe ic_out                          ; it runs when the scheduler picks it
ic_switch:
    mov eax, esi
    call switch_to
    jmp ic_out
ic_pending:
    mov ecx, irq_pending
    mov dword ptr [ecx + ebx*4], 1
ic_out:
    popad
    add esp, 4
    iretd

; irq_deliver: esi = the owner of IRQ ebx: its results are the interrupt's message.
irq_deliver:
    xor eax, eax
    mov [esi + TCB_RES_DOPE], eax
    mov [esi + TCB_RES_MSG0], eax
    mov [esi + TCB_RES_MSG1], eax
    mov [esi + TCB_RES_SRC_HI], eax
    lea eax, [ebx + 1]
    mov [esi + TCB_RES_SRC_LO], eax
    ret

; irq_attach: from ipc.asm, a closed receive from eax:edx that is no thread; ebp = the
; receiver.  CF set: not an interrupt ID either, or another living thread owns that IRQ.
; Otherwise ebp owns it; esi = 0: a pending interrupt was delivered (results set), or esi =
; what to wait for (IRQ_WAIT_BASE + irq) with the line unmasked.  Clobbers eax-edx.
irq_attach:
    test edx, edx
    jnz ia_no
    dec eax
    cmp eax, 15
    ja ia_no
    test eax, eax
    jz ia_no                            ; the kernel's timer
    cmp eax, 2
    je ia_no                            ; the cascade
    mov ebx, eax
    mov ecx, irq_owner
    mov esi, [ecx + ebx*4]
    test esi, esi
    jz ia_take
    cmp esi, ebp
    je ia_mine
    cmp dword ptr [esi + TCB_ID_LO], 0  ; the owner was deleted or killed: free
    je ia_take
    cmp dword ptr [esi + TCB_STATE], TS_DEAD
    jne ia_no
ia_take:
    mov [ecx + ebx*4], ebp
ia_mine:
    mov ecx, irq_pending
    cmp dword ptr [ecx + ebx*4], 0
    je ia_wait
    mov dword ptr [ecx + ebx*4], 0
    mov esi, ebp
    call irq_deliver
    xor esi, esi
    clc
    ret
ia_wait:
    mov eax, ebx
    call pic_unmask
    lea esi, [ebx + IRQ_WAIT_BASE]
    clc
    ret
ia_no:
    stc
    ret

; pic_mask / pic_unmask: eax = IRQ.  Clobbers eax.
pic_mask:
    push ecx
    push edx
    mov ecx, eax
    mov dl, 1
    cmp ecx, 8
    jae pm_slave
    shl dl, cl
    in al, PIC1_DATA
    or al, dl
    out PIC1_DATA, al
    jmp pm_out
pm_slave:
    sub cl, 8
    shl dl, cl
    in al, PIC2_DATA
    or al, dl
    out PIC2_DATA, al
pm_out:
    pop edx
    pop ecx
    ret
pic_unmask:
    push ecx
    push edx
    mov ecx, eax
    mov dl, 1
    cmp ecx, 8
    jae pu_slave
    shl dl, cl
    not dl
    in al, PIC1_DATA
    and al, dl
    out PIC1_DATA, al
    jmp pu_out
pu_slave:
    sub cl, 8
    shl dl, cl
    not dl
    in al, PIC2_DATA
    and al, dl
    out PIC2_DATA, al
    in al, PIC1_DATA                    ; and the cascade
    and al, 0xFB
    out PIC1_DATA, al
pu_out:
    pop edx
    pop ecx
    ret

; Spurious or unexpected: acknowledge and ignore.
irq_other:
    push eax
    mov al, 0x20
    out PIC2_CMD, al
    out PIC1_CMD, al
    pop eax
    iretd

.section .data
.align 4
irq_owner: .space 64                    ; TCB attached to each IRQ, 0 = none
irq_pending: .space 64                  ; 1: fired while its owner was not waiting
irq_count: .long 0                      ; interrupts delivered through irq_common (tools)

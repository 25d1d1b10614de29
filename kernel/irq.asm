; kernel/irq.asm: interrupt hardware.  The 8259A pair (IRQ 0-15 at vectors 0x20-0x2F, all
; masked but the timer and the lines user threads wait on: interrupts as IPC, below), or with
; "ioapic" on the kernel command line the I/O APIC and local APIC (at the end), and the
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
    mov esi, opt_ioapic
    call cmdline_has
    jnc ii_done
    call ioapic_init
ii_done:
    ret

irq0_entry:
    pushad
    cld
    mov cx, L4_SEL_UDATA
    mov ds, cx
    mov es, cx
    mov al, 0x20                        ; EOI first: a switch below may not come back soon
    out PIC1_CMD, al
irq0_tick:
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
    call dword ptr [irq_ack_fn]         ; pic_ack or ioapic_ack: mask (if need be) and EOI
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
    call dword ptr [irq_unmask_fn]      ; pic_unmask or ioapic_unmask
    lea esi, [ebx + IRQ_WAIT_BASE]
    clc
    ret
ia_no:
    stc
    ret

; pic_ack: eax = IRQ: masked at the PIC and acknowledged (EOI to the PIC(s) it came through).
; pic_unmask: eax = IRQ.  Clobbers eax.
pic_ack:
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
    mov al, 0x20
    out PIC1_CMD, al
    jmp pm_out
pm_slave:
    sub cl, 8
    shl dl, cl
    in al, PIC2_DATA
    or al, dl
    out PIC2_DATA, al
    mov al, 0x20
    out PIC2_CMD, al
    out PIC1_CMD, al
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

; -- the IOAPIC (docs/abi.md "Interrupts"; kernel command line word "ioapic") ---------------
; With "ioapic" on the kernel's command line and an Intel MP 1.4 configuration table that
; lists an I/O APIC (MP spec 1.4 ch. 4: floating pointer in the EBDA's first KiB, the last KiB
; of base memory or the BIOS ROM 0xF0000-0xFFFFF), the kernel masks both 8259As and routes
; ISA IRQ n through the I/O APIC pin the table's I/O interrupt entries give it (IRQ 0: pin 2 on
; a PC), to the same vector IRQ_BASE + n, polarity and trigger as listed (ISA "conforms": high,
; edge), physical destination: the local APIC, where the kernel acknowledges it (EOI).  The
; I/O APIC and local APIC are mapped 1:1 by one 4 MiB kernel page (uncached).  Interrupt IPC
; is the same in both modes; a level-triggered line is masked at its pin until the owner waits
; again, as with the 8259A, but an edge-triggered one stays unmasked once attached: the
; 82093AA drops edges on a masked pin (the 8259A latches them), and an edge that finds its
; owner busy is kept pending by the kernel instead (irq_pending).

.equ MP_SIG, 0x5F504D5F                 ; "_MP_"
.equ PCMP_SIG, 0x504D4350               ; "PCMP"
.equ APIC_PDE_FLAGS, 0x19B              ; 4 MiB, global, uncached, write-through, W, P
.equ LAPIC_SVR_ON, 0x1FF                ; software enable, spurious vector 0xFF
.equ APIC_SPURIOUS, 0xFF
.equ IOREDTBL_MASKED, 0x10000
.equ IOREDTBL_LEVEL, 0x8000
.equ IOREDTBL_LOW, 0x2000               ; active low
.equ MP_TABLE_LIMIT, 0x100000           ; an MP table above the first MiB is not believed

; cmdline_has: esi = a NUL-terminated word -> CF set when the kernel's command line (multiboot)
; contains it.  Clobbers eax, ecx, edx, edi.
cmdline_has:
    mov edx, [boot_mbi]
    add edx, KOFF
    test dword ptr [edx], 4             ; MBI flags bit 2: cmdline
    jz ch_no
    mov edx, [edx + 16]
    add edx, KOFF
ch_start:
    xor ecx, ecx
ch_cmp:
    mov al, [esi + ecx]
    test al, al
    jz ch_yes
    cmp al, [edx + ecx]
    jne ch_next
    inc ecx
    jmp ch_cmp
ch_next:
    cmp byte ptr [edx], 0
    je ch_no
    inc edx
    jmp ch_start
ch_yes:
    stc
    ret
ch_no:
    clc
    ret

; mp_find: esi = physical start, ecx = bytes -> eax = physical address of a checksummed MP
; floating pointer there (16-byte aligned), 0 if none.  Clobbers ecx, edx, esi.
mp_find:
    add esi, KOFF
mpf_loop:
    cmp ecx, 16
    jb mpf_none
    cmp dword ptr [esi], MP_SIG
    jne mpf_next
    xor eax, eax
    xor edx, edx
mpf_sum:
    add al, [esi + edx]
    inc edx
    cmp edx, 16
    jb mpf_sum
    test al, al
    jnz mpf_next
    mov eax, esi
    sub eax, KOFF
    ret
mpf_next:
    add esi, 16
    sub ecx, 16
    jmp mpf_loop
mpf_none:
    xor eax, eax
    ret

; ioapic_init: switch to the I/O APIC if the MP table describes one (else say so and stay with
; the 8259A).  Clobbers all.
ioapic_init:
    mov eax, KOFF + 0x40E               ; BDA: the EBDA's segment
    movzx esi, word ptr [eax]
    shl esi, 4
    mov ecx, 1024
    call mp_find
    test eax, eax
    jnz ioi_mp
    mov eax, KOFF + 0x413               ; BDA: base memory in KiB: its last KiB
    movzx esi, word ptr [eax]
    shl esi, 10
    sub esi, 1024
    mov ecx, 1024
    call mp_find
    test eax, eax
    jnz ioi_mp
    mov esi, 0xF0000
    mov ecx, 0x10000
    call mp_find
    test eax, eax
    jz ioi_none
ioi_mp:
    mov ebx, [eax + KOFF + 4]           ; the configuration table (0: a default configuration)
    test ebx, ebx
    jz ioi_none
    cmp ebx, MP_TABLE_LIMIT
    jae ioi_none
    add ebx, KOFF
    cmp dword ptr [ebx], PCMP_SIG
    jne ioi_none
    mov eax, [ebx + 36]                 ; the local APIC's address
    mov [lapic_base], eax
    movzx ecx, word ptr [ebx + 34]      ; entries
    lea esi, [ebx + 44]
    mov edi, irq_pin                    ; default: IRQ n on pin n
    xor eax, eax
ioi_pins:
    mov [edi + eax*4], eax
    mov dword ptr [edi + eax*4 + 64], 0 ; irq_flags: ISA high, edge
    inc eax
    cmp eax, 16
    jb ioi_pins
    mov dword ptr [isa_bus], -1
ioi_entry:
    test ecx, ecx
    jz ioi_entries_done
    movzx eax, byte ptr [esi]
    cmp eax, 0
    je ioi_cpu
    cmp eax, 1
    je ioi_bus
    cmp eax, 2
    je ioi_ioapic
    cmp eax, 3
    je ioi_int
    jmp ioi_next8
ioi_cpu:
    add esi, 20
    dec ecx
    jmp ioi_entry
ioi_bus:                                ; "ISA   ": its bus ID
    cmp dword ptr [esi + 2], 0x20415349 ; "ISA "
    jne ioi_next8
    movzx eax, byte ptr [esi + 1]
    mov [isa_bus], eax
    jmp ioi_next8
ioi_ioapic:                             ; the first enabled one
    cmp dword ptr [ioapic_base], 0
    jne ioi_next8
    test byte ptr [esi + 3], 1
    jz ioi_next8
    mov eax, [esi + 4]
    mov [ioapic_base], eax
    movzx eax, byte ptr [esi + 1]
    mov [ioapic_id], eax
    jmp ioi_next8
ioi_int:                                ; an INT from the ISA bus: IRQ -> pin, flags
    cmp byte ptr [esi + 1], 0
    jne ioi_next8
    movzx eax, byte ptr [esi + 4]
    cmp eax, [isa_bus]
    jne ioi_next8
    movzx eax, byte ptr [esi + 6]
    cmp eax, [ioapic_id]
    jne ioi_next8
    movzx eax, byte ptr [esi + 5]       ; the IRQ
    cmp eax, 16
    jae ioi_next8
    movzx edx, byte ptr [esi + 7]       ; the pin
    mov [edi + eax*4], edx
    movzx edx, word ptr [esi + 2]       ; polarity (bits 0-1), trigger (bits 2-3); 3 = the
    push ecx                            ; other one, 0/1 = ISA's (high, edge)
    xor ecx, ecx
    push edx
    and edx, 3
    cmp edx, 3
    jne ioi_high
    or ecx, IOREDTBL_LOW
ioi_high:
    pop edx
    shr edx, 2
    and edx, 3
    cmp edx, 3
    jne ioi_edge
    or ecx, IOREDTBL_LEVEL
ioi_edge:
    mov [edi + eax*4 + 64], ecx
    pop ecx
ioi_next8:
    add esi, 8
    dec ecx
    jmp ioi_entry
ioi_entries_done:
    mov eax, [ioapic_base]              ; both APICs in one 4 MiB page the kernel can use
    test eax, eax
    jz ioi_none
    mov edx, [lapic_base]
    xor edx, eax
    test edx, SUPER_MASK
    jnz ioi_none
    shr eax, 22
    cmp eax, PDE_TCB_FIRST + TCB_PAGE_TABLES
    jb ioi_none
    cmp eax, PDE_IO
    jae ioi_none
    mov edx, master_pd
    cmp dword ptr [edx + eax*4], 0
    jne ioi_none
    mov ecx, [ioapic_base]
    and ecx, SUPER_MASK
    or ecx, APIC_PDE_FLAGS
    mov [edx + eax*4], ecx              ; (every space is made later: it copies this)
    mov eax, cr3
    mov cr3, eax
    ; the 8259As: every line masked (they stay programmed: a spurious IRQ 7/15 is harmless)
    mov al, 0xFF
    out PIC1_DATA, al
    out PIC2_DATA, al
    ; the local APIC: enabled, spurious vector APIC_SPURIOUS, accept every priority
    mov edx, [lapic_base]
    mov dword ptr [edx + 0x80], 0       ; TPR
    mov dword ptr [edx + 0xF0], LAPIC_SVR_ON
    ; the redirection entries: vector IRQ_BASE + n, fixed, physical destination = our APIC
    mov ecx, [edx + 0x20]               ; its ID (bits 24-31)
    and ecx, 0xFF000000
    mov [ioapic_dest], ecx
    xor ebx, ebx
ioi_route:
    cmp ebx, 2                          ; the cascade is no device
    je ioi_route_next
    lea eax, [ebx + IRQ_BASE]
    mov edx, irq_pin
    or eax, [edx + ebx*4 + 64]
    mov [edx + ebx*4 + 128], eax        ; irq_redir: the entry's low dword, unmasked
    or eax, IOREDTBL_MASKED
    test ebx, ebx
    jnz ioi_route_write
    and eax, 0xFFFEFFFF                 ; IRQ 0, the kernel's timer: unmasked
ioi_route_write:
    mov ecx, eax
    mov eax, ebx
    call ioapic_write_entry
ioi_route_next:
    inc ebx
    cmp ebx, 16
    jb ioi_route
    mov dword ptr [irq_ack_fn], ioapic_ack
    mov dword ptr [irq_unmask_fn], ioapic_unmask
    mov ecx, IRQ_BASE                   ; the timer's entry acknowledges at the local APIC
    mov eax, irq0_apic_entry
    mov edx, 0x8E00
    call set_gate
    mov ecx, APIC_SPURIOUS
    mov eax, apic_spurious
    call set_gate
    mov ecx, IRQ_BASE + 2               ; no pin is routed to the cascade's vector
    mov eax, apic_stray
    call set_gate
    mov dword ptr [ioapic_mode], 1
    mov esi, msg_ioapic
    call kputs
    mov eax, irq_pin
    mov eax, [eax]
    call kputdec
    call kputnl
    ret
ioi_none:
    mov dword ptr [ioapic_base], 0
    mov esi, msg_no_ioapic
    jmp kputs

; ioapic_write_entry: eax = IRQ, ecx = the low dword of its pin's redirection entry (the high
; one: our local APIC).  Clobbers eax, edx.
ioapic_write_entry:
    mov edx, irq_pin
    mov eax, [edx + eax*4]
    lea eax, [eax*2 + 0x10]             ; IOREDTBL n: registers 0x10 + 2n, 0x11 + 2n
    mov edx, [ioapic_base]
    inc eax
    mov [edx], eax                      ; IOREGSEL
    push ecx
    mov ecx, [ioapic_dest]
    mov [edx + 0x10], ecx               ; IOWIN
    pop ecx
    dec eax
    mov [edx], eax
    mov [edx + 0x10], ecx
    ret

; ioapic_ack: eax = IRQ: a level-triggered line is masked at its pin (edges stay unmasked, see
; above); the local APIC gets its EOI.  ioapic_unmask: eax = IRQ, unmasked.  Clobbers eax.
ioapic_ack:
    push ecx
    push edx
    mov edx, irq_pin
    mov ecx, [edx + eax*4 + 128]
    test ecx, IOREDTBL_LEVEL
    jz ioa_eoi
    or ecx, IOREDTBL_MASKED
    call ioapic_write_entry
ioa_eoi:
    mov edx, [lapic_base]
    mov dword ptr [edx + 0xB0], 0       ; EOI
    pop edx
    pop ecx
    ret
ioapic_unmask:
    push ecx
    push edx
    mov edx, irq_pin
    mov ecx, [edx + eax*4 + 128]
    call ioapic_write_entry
    pop edx
    pop ecx
    ret

; The timer through the I/O APIC: as irq0_entry, EOI at the local APIC.
irq0_apic_entry:
    pushad
    cld
    mov cx, L4_SEL_UDATA
    mov ds, cx
    mov es, cx
    mov eax, [lapic_base]
    mov dword ptr [eax + 0xB0], 0
    jmp irq0_tick

; The local APIC's spurious vector: no EOI (SDM vol. 3 §10.9).
apic_spurious:
    iretd

; Vector IRQ_BASE + 2 in I/O APIC mode (nothing is routed there): acknowledge and ignore.
apic_stray:
    push eax
    mov eax, [lapic_base]
    mov dword ptr [eax + 0xB0], 0
    pop eax
    iretd

.section .rodata
opt_ioapic: .asciz "ioapic"
msg_ioapic: .asciz "L4: interrupts through the I/O APIC (8259A masked); IRQ 0 on pin "
msg_no_ioapic: .asciz "L4: no I/O APIC in an MP table: interrupts through the 8259A\n"

.section .data
.align 4
irq_ack_fn: .long pic_ack
irq_unmask_fn: .long pic_unmask
ioapic_mode: .long 0                    ; 1: interrupts through the I/O APIC (tools)
ioapic_base: .long 0
ioapic_id: .long 0
ioapic_dest: .long 0
lapic_base: .long 0
isa_bus: .long 0
irq_pin: .space 64                      ; I/O APIC pin of IRQ n
irq_flags: .space 64                    ; polarity and trigger bits of its entry (MP table)
irq_redir: .space 64                    ; its entry's low dword, unmasked
irq_owner: .space 64                    ; TCB attached to each IRQ, 0 = none
irq_pending: .space 64                  ; 1: fired while its owner was not waiting
irq_count: .long 0                      ; interrupts delivered through irq_common (tools)

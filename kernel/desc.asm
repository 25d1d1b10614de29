; kernel/desc.asm: the processor's descriptor tables, GDT, IDT and TSS.
;
; GDT: flat kernel code/data (DPL 0), flat user code/data (DPL 3), the TSS, and one DPL-3
; call gate per system call (DESIGN D6: `lcall L4_GATE_*, 0` enters the kernel without a host
; trap).  The kernel keeps DS = ES = the user data selector, which is flat and usable from
; ring 0, so that returning to user mode never needs a segment reload.
;
; IDT: 256 interrupt gates (interrupts off in the kernel).  Exceptions go to trap.asm, IRQs
; to irq.asm, 0x30-0x36 to entry.asm; int3 and the system calls have DPL 3, every other
; vector DPL 0, so `int n` from user mode for any other n is a #GP the kernel handles.
;
; TSS: only SS0:ESP0 (the current thread's kernel stack top, set at every switch) and the I/O
; bitmap matter.  The CPU sees the TSS at IO_TSS_VIRT (space.asm maps its page there, followed
; by each space's I/O bitmap); the kernel writes it through `tss`, the same memory.  IOPL is 0.
;
; The CPU page (`tss_page`): the IDT, the GDT, the two words the IPC fast path reads and
; writes besides the TCBs (cur_space, resume_user_ptr) and the TSS share one page, the one
; space.asm maps at IO_PAGE_VIRT in every space.  Once that mapping exists (desc_alias, after
; space_init) GDTR and IDTR point there too, and the fast path uses the CPU_* aliases
; (layout.inc), so what a switch touches besides code and TCBs is this one virtual page.
; Unicorn (QEMU 5) drops its whole software TLB at every CR3 write and each page touched after
; it costs a refill: one page here instead of three (the GDT and those words in .data, the TSS
; written through the kernel window and read by the CPU at IO_TSS_VIRT); docs/benchmarking.md.

.section .text
desc_init:
    push ebx
    ; TSS descriptor: base = tss, limit 103, type 9 (available 32-bit TSS), present
    mov eax, IO_TSS_VIRT                ; its alias next to the per-space I/O bitmap
    mov ebx, gdt
    mov word ptr [ebx + 0x28], IO_TSS_LIMIT
    mov [ebx + 0x2A], ax
    shr eax, 16
    mov [ebx + 0x2C], al
    mov byte ptr [ebx + 0x2D], 0x89
    mov byte ptr [ebx + 0x2E], 0
    mov [ebx + 0x2F], ah
    ; call gates 0x30.. : selector 0x08, 0 parameters, type 0xC, DPL 3, present
    mov esi, gate_entries
    lea edi, [ebx + 0x30]
    mov ecx, L4_SYSCALL_COUNT
desc_gate:
    mov eax, [esi]
    mov [edi], ax
    mov word ptr [edi + 2], L4_SEL_KCODE
    mov word ptr [edi + 4], 0xEC00
    shr eax, 16
    mov [edi + 6], ax
    add esi, 4
    add edi, 8
    loop desc_gate
    LGDT [gdtr]
    FARJMP L4_SEL_KCODE, desc_reload
desc_reload:
    mov ax, L4_SEL_KDATA
    mov ss, ax
    mov ax, L4_SEL_UDATA
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    ; TSS
    mov ebx, tss
    mov dword ptr [ebx + 8], L4_SEL_KDATA       ; ss0
    mov word ptr [ebx + 0x66], 104              ; I/O map base: the bitmap page after it
    mov ax, L4_SEL_TSS
    ltr ax
    ; IDT: every vector to `unexpected_vector`, then the real ones from idt_table
    mov edi, idt
    xor ecx, ecx
desc_idt_default:
    mov eax, unexpected_vector
    mov edx, 0x8E00
    call set_gate
    inc ecx
    cmp ecx, 256
    jb desc_idt_default
    mov esi, idt_table
desc_idt_table:
    mov ecx, [esi]
    cmp ecx, -1
    je desc_idt_done
    mov eax, [esi + 4]
    mov edx, [esi + 8]
    call set_gate
    add esi, 12
    jmp desc_idt_table
desc_idt_done:
    LIDT [idtr]
    pop ebx
    ret

; set_gate: ecx = vector, eax = handler, edx = type/attributes word (0x8E00 DPL 0, 0xEE00
; DPL 3).  Clobbers eax.
set_gate:
    push ebx
    lea ebx, [ecx*8]
    add ebx, idt
    mov [ebx], ax
    mov word ptr [ebx + 2], L4_SEL_KCODE
    mov [ebx + 4], dx
    shr eax, 16
    mov [ebx + 6], ax
    pop ebx
    ret

; desc_alias: GDTR and IDTR to the CPU page's alias at IO_PAGE_VIRT (mapped by space_init in
; the master directory, so in every space): the descriptor reads of every entry and exit then
; hit the page the TSS is read from.  Clobbers eax.
desc_alias:
    mov eax, CPU_GDT
    mov [gdtr + 2], eax
    LGDT [gdtr]
    mov eax, CPU_IDT
    mov [idtr + 2], eax
    LIDT [idtr]
    ret

.section .data
.align 4
gdtr:
    .short 103                          ; 13 descriptors
    .long gdt
.align 4
idtr:
    .short 2047
    .long idt

; The CPU page: offsets fixed (layout.inc CPU_*; tests/kernel/test_build.py checks them), the
; TSS at its end so that the I/O bitmap pages of the space follow it at IO_PAGE_VIRT + 4096.
.align 4096
tss_page:                               ; mapped at IO_PAGE_VIRT in every space
idt:
    .space 2048
gdt:
    .long 0, 0
    .long 0x0000FFFF, 0x00CF9A00        ; 0x08 kernel code
    .long 0x0000FFFF, 0x00CF9200        ; 0x10 kernel data
    .long 0x0000FFFF, 0x00CFFA00        ; 0x18 user code (DPL 3)
    .long 0x0000FFFF, 0x00CFF200        ; 0x20 user data (DPL 3)
    .long 0, 0                          ; 0x28 TSS (filled in)
    .long 0, 0, 0, 0, 0, 0, 0, 0        ; 0x30-0x60 call gates (filled in)
    .long 0, 0, 0, 0, 0, 0
gdt_end:
cur_space: .long 0                      ; the page directory in CR3
resume_user_ptr:                        ; where a fast-path sender resumes (fastpath.asm)
    .long ipc_resume_user
cpu_page_free:
    .space 0xF98 - 0x870                ; up to the TSS (CPU_TSS - IO_PAGE_VIRT)
tss:
    .space 104

; The call-gate targets, in system-call order.
gate_entries:
    .long gate_ipc, gate_id_nearest, gate_fpage_unmap, gate_thread_switch
    .long gate_thread_schedule, gate_lthread_ex_regs, gate_task_new

; vector, handler, attributes; ends with -1
idt_table:
    .long 0, exc_de, 0x8E00
    .long 1, exc_db, 0x8E00
    .long 2, exc_nmi, 0x8E00
    .long 3, kdebug_int3, 0xEE00        ; int3 from user mode: the kernel debugger interface
    .long 4, exc_of, 0x8E00
    .long 5, exc_br, 0x8E00
    .long 6, exc_ud, 0x8E00
    .long 7, exc_nm, 0x8E00
    .long 8, exc_df, 0x8E00
    .long 9, exc_cso, 0x8E00
    .long 10, exc_ts, 0x8E00
    .long 11, exc_np, 0x8E00
    .long 12, exc_ss, 0x8E00
    .long 13, exc_gp, 0x8E00
    .long 14, exc_pf, 0x8E00
    .long 16, exc_mf, 0x8E00
    .long 17, exc_ac, 0x8E00
    .long 18, exc_mc, 0x8E00
    .long 19, exc_xm, 0x8E00
    .long 0x20, irq0_entry, 0x8E00
    .long 0x21, irq1_entry, 0x8E00
    .long 0x22, irq2_entry, 0x8E00
    .long 0x23, irq3_entry, 0x8E00
    .long 0x24, irq4_entry, 0x8E00
    .long 0x25, irq5_entry, 0x8E00
    .long 0x26, irq6_entry, 0x8E00
    .long 0x27, irq7_entry, 0x8E00
    .long 0x28, irq8_entry, 0x8E00
    .long 0x29, irq9_entry, 0x8E00
    .long 0x2A, irq10_entry, 0x8E00
    .long 0x2B, irq11_entry, 0x8E00
    .long 0x2C, irq12_entry, 0x8E00
    .long 0x2D, irq13_entry, 0x8E00
    .long 0x2E, irq14_entry, 0x8E00
    .long 0x2F, irq15_entry, 0x8E00
    .long 0x30, fastpath_ipc, 0xEE00
    .long 0x31, int_id_nearest, 0xEE00
    .long 0x32, int_fpage_unmap, 0xEE00
    .long 0x33, int_thread_switch, 0xEE00
    .long 0x34, int_thread_schedule, 0xEE00
    .long 0x35, int_lthread_ex_regs, 0xEE00
    .long 0x36, int_task_new, 0xEE00
    .long -1

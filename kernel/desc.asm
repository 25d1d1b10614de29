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

; -- thread-local storage (docs/abi.md "Thread-local storage") -------------------------------
; One GDT entry (L4_SEL_TLS) holds the TLS segment of `tls_owner`.  A switch to a thread with
; a TLS segment goes through resume_tcb's special case (its TCB_CR3 is 0), which calls
; tls_load; such a thread never takes the fast path (TCB_FP_BLOCK) nor waits in TS_WAIT_RECV
; (TCB_RCV_DEFAULT), so the fast path and switches between threads without TLS pay nothing.  The
; kernel does not save GS: a thread with TLS runs with GS = L4_SEL_TLS (loaded at every switch
; to it), for the others GS is whatever the last thread left.

; tls_load: eax = a thread with a TLS segment, about to run: its descriptor into the GDT
; unless it is there already, and GS = L4_SEL_TLS (which reloads GS's hidden base).
; Clobbers ecx, edx.
tls_load:
    cmp eax, [tls_owner]
    je tls_ld_gs
    mov [tls_owner], eax
    mov ecx, [eax + TCB_TLS_DESC_LO]
    mov edx, [eax + TCB_TLS_DESC_HI]
    mov [gdt_tls], ecx
    mov [gdt_tls + 4], edx
tls_ld_gs:
    mov cx, L4_SEL_TLS
    mov gs, cx
    ret

; tls_set: edi = a thread, eax = TLS base, edx = limit word (L4_TLS_LIMIT_MASK |
; L4_TLS_LIMIT_PAGES; 0:0 removes the segment), ebp = the current thread.  CF set: refused
; (a base at or above L4_USER_LIMIT, undefined limit bits), nothing changed.  The segment's
; limit protects nothing (the kernel's pages are supervisor-only, and the emulator does not
; check segment limits).  Clobbers eax, ecx, edx.
tls_set:
    mov ecx, eax
    or ecx, edx
    jz tls_clear
    cmp eax, L4_USER_LIMIT
    jae tls_refuse
    test edx, TLS_LIMIT_UNDEFINED
    jnz tls_refuse
    mov [edi + TCB_TLS_BASE], eax
    mov [edi + TCB_TLS_LIMIT], edx
    mov ecx, eax                        ; low dword: base 15..0, limit 15..0
    shl ecx, 16
    mov cx, dx
    mov [edi + TCB_TLS_DESC_LO], ecx
    mov ecx, eax                        ; high dword: base 31..24, G, B, limit 19..16,
    and ecx, 0xFF000000                 ; present, DPL 3, data read/write accessed,
    and edx, TLS_LIMIT_HIGH_BITS        ; base 23..16 (SDM vol. 3 §3.4.5)
    or ecx, edx
    or ecx, TLS_DESC_HIGH_FLAGS
    shr eax, 16
    mov cl, al
    mov [edi + TCB_TLS_DESC_HI], ecx
    or dword ptr [edi + TCB_FP_BLOCK], FPB_TLS
    mov dword ptr [edi + TCB_CR3], 0
    mov dword ptr [edi + TCB_RCV_DEFAULT], TS_WAIT_RECV_DQ
    cmp dword ptr [edi + TCB_STATE], TS_WAIT_RECV
    jne tls_set_rcv
    mov dword ptr [edi + TCB_STATE], TS_WAIT_RECV_DQ    ; no longer for the fast path ...
tls_set_rcv:
    cmp dword ptr [edi + TCB_RCV_STATE], TS_WAIT_RECV   ; ... nor after the send it is in
    jne tls_set_owner
    mov dword ptr [edi + TCB_RCV_STATE], TS_WAIT_RECV_DQ
tls_set_owner:
    cmp edi, [tls_owner]
    jne tls_set_cur
    mov dword ptr [tls_owner], 0        ; its new descriptor goes in at the next switch
tls_set_cur:
    cmp edi, ebp
    jne tls_ok
    mov eax, edi                        ; the caller itself: at once
    call tls_load
tls_ok:
    clc
    ret
tls_clear:
    mov [edi + TCB_TLS_BASE], eax
    mov [edi + TCB_TLS_LIMIT], eax
    mov [edi + TCB_TLS_DESC_LO], eax
    mov [edi + TCB_TLS_DESC_HI], eax
    and dword ptr [edi + TCB_FP_BLOCK], FPB_SENDQ
    mov eax, [edi + TCB_SPACE]
    mov [edi + TCB_CR3], eax
    mov dword ptr [edi + TCB_RCV_DEFAULT], TS_WAIT_RECV
    cmp edi, [tls_owner]
    jne tls_clear_cur
    mov dword ptr [tls_owner], 0
tls_clear_cur:
    cmp edi, ebp
    jne tls_ok
    mov cx, L4_SEL_UDATA
    mov gs, cx
    jmp tls_ok
tls_refuse:
    stc
    ret

.section .data
.align 4
gdtr:
    .short 111                          ; 14 descriptors
    .long gdt
.align 4
idtr:
    .short 2047
    .long idt
tls_owner: .long 0                      ; the thread whose TLS descriptor is in the GDT

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
gdt_tls:                                ; 0x68 L4_TLS_GDT_ENTRY: tls_owner's TLS segment
    .long 0, 0
gdt_end:
cur_space: .long 0                      ; the page directory in CR3
resume_user_ptr:                        ; where a fast-path sender resumes (fastpath.asm)
    .long ipc_resume_user
cpu_page_free:
    .space 0xF98 - 0x878                ; up to the TSS (CPU_TSS - IO_PAGE_VIRT)
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

; kernel/space.asm: memory.  The kernel's frame pool, address spaces (page directories whose
; kernel half is shared), flexpage mapping for IPC map messages, and fpage_unmap.
;
; The pool is a range of RAM right after the boot modules (1/16 of RAM, 2-32 MiB), reported
; as reserved1 in the KIP so sigma0 never hands it out; page directories, page tables and TCB
; pages come from it.  All user memory belongs to sigma0, which maps it on.
;
; Mapping (V2): the sender names an fpage of its space (base | log2 size << 2 | W | G) and a
; send base; the receiver a window (an fpage too).  The smaller of the two decides the size,
; and the send base picks where the smaller lies in the larger.  Page by page the sender's
; entry is copied (writable only if both the sender's entry and the fpage allow it; grant
; removes the sender's); 4 MiB pages stay 4 MiB where both sides are aligned.  Nothing above
; L4_USER_LIMIT is ever mapped.  Every mapping installed is recorded in the mapping database
; (mapdb.asm): an old mapping in the receiver's way is revoked recursively first (the loop then
; looks at the page again: the revocation may have taken the source too), a grant moves the
; sender's node, and fpage_unmap revokes what was derived from the caller's pages.

.equ PDE_KERNEL_COUNT, 1024 - PDE_KERNEL_FIRST
.equ PD_KERNEL_HALF, KOFF + PDE_KERNEL_FIRST * 4    ; kernel address of a PD's kernel half, less the PD

.section .text
pool_init:
    mov eax, [ram_end]
    shr eax, 4
    cmp eax, 0x200000
    jae pi_min_ok
    mov eax, 0x200000
pi_min_ok:
    cmp eax, 0x2000000
    jbe pi_max_ok
    mov eax, 0x2000000
pi_max_ok:
    add eax, [pool_start]
    cmp eax, [ram_end]
    ja pi_too_small
    mov [pool_end], eax
    mov eax, [pool_start]
    mov [pool_next], eax
    ret
pi_too_small:
    mov esi, msg_small_ram
    jmp panic

; pool_alloc -> eax = physical address of a zeroed frame, or 0.  Preserves all else.
pool_alloc:
    push ecx
    push edi
    mov eax, [pool_free_list]
    test eax, eax
    jz pa_bump
    mov ecx, [eax + KOFF]
    mov [pool_free_list], ecx
    jmp pa_zero
pa_bump:
    mov eax, [pool_next]
    cmp eax, [pool_end]
    jae pa_none
    lea ecx, [eax + 0x1000]
    mov [pool_next], ecx
pa_zero:
    push eax
    lea edi, [eax + KOFF]
    xor eax, eax
    mov ecx, 1024
    rep stosd
    pop eax
    inc dword ptr [pool_used]
    pop edi
    pop ecx
    ret
pa_none:
    xor eax, eax
    pop edi
    pop ecx
    ret

; pool_free: eax = physical frame, back to the pool.  Preserves all.
pool_free:
    push ecx
    mov ecx, [pool_free_list]
    mov [eax + KOFF], ecx
    mov [pool_free_list], eax
    dec dword ptr [pool_used]
    pop ecx
    ret

; space_init: the kernel-half entries every address space shares: the TCB area (8 page
; tables whose entries all show the zero page until a TCB is created) and the KIP.
space_init:
    call pool_alloc
    mov [zero_page], eax
    mov ecx, TCB_PAGE_TABLES
    mov edi, master_pd + PDE_TCB_FIRST * 4
si_tcb_pts:
    call pool_alloc                     ; consecutive frames: the pool is fresh
    test eax, eax
    jz boot_oom
    cmp ecx, TCB_PAGE_TABLES
    jne si_not_first
    lea edx, [eax + KOFF]
    mov [tcb_ptes], edx
si_not_first:
    push ecx
    push edi
    lea edi, [eax + KOFF]
    mov edx, eax
    mov eax, [zero_page]
    or eax, PTE_P                       ; present, read-only, supervisor
    mov ecx, 1024
    rep stosd
    pop edi
    pop ecx
    or edx, PTE_W | PTE_P
    mov [edi], edx
    add edi, 4
    loop si_tcb_pts
    call pool_alloc                     ; the KIP's page table (user may read the KIP only)
    test eax, eax
    jz boot_oom
    mov edx, kip - KOFF
    or edx, PTE_U | PTE_P
    mov [eax + KOFF + 4092], edx
    or eax, PTE_U | PTE_W | PTE_P
    mov edx, master_pd + PDE_KIP * 4
    mov [edx], eax
    ; the TSS's page and an I/O bitmap that denies every port, shared by every space
    push ebx
    call pool_alloc
    test eax, eax
    jz boot_oom
    mov ebx, eax                        ; the page table
    call pool_alloc
    test eax, eax
    jz boot_oom
    mov edx, eax                        ; the all-ones bitmap page (both halves)
    lea edi, [eax + KOFF]
    mov eax, -1
    mov ecx, 1024
    rep stosd
    or edx, PTE_P
    mov [ebx + IO_PT_K + 4], edx
    mov [ebx + IO_PT_K + 8], edx
    mov edx, tss_page - KOFF
    or edx, PTE_W | PTE_P
    mov [ebx + IO_PT_K], edx
    mov [io_deny_pt], ebx
    or ebx, PTE_W | PTE_P
    mov edx, master_pd + PDE_IO * 4
    mov [edx], ebx
    pop ebx
    call mdb_init
    mov eax, cr3
    mov cr3, eax
    ret

; -- I/O ports (l4emu: docs/abi.md "I/O ports") ----------------------------------------------
; io_private: eax = page directory -> eax = kernel address of its own I/O page table (entries
; 1 and 2: the two bitmap pages), allocated (all ports denied) if it has none; 0 if the pool
; is empty.  Preserves all else.
io_private:
    push ebx
    push ecx
    push edx
    push edi
    mov ebx, eax
    mov edx, [ebx + PD_IO_KOFF]
    and edx, PAGE_MASK                  ; (the CPU sets the accessed bit)
    cmp edx, [io_deny_pt]
    jne iop_have
    call pool_alloc
    test eax, eax
    jz iop_out
    mov edx, eax                        ; the table
    mov ecx, 2
iop_page:
    call pool_alloc
    test eax, eax
    jz iop_oom
    push ecx
    push eax
    lea edi, [eax + KOFF]
    mov eax, -1
    mov ecx, 1024
    rep stosd
    pop eax
    pop ecx
    or eax, PTE_W | PTE_P               ; supervisor: the CPU reads it, the user cannot
    mov edi, ecx
    xor edi, 3                          ; ecx 2, 1 -> entry 1, 2
    mov [edx + edi*4 + IO_PT_K], eax
    loop iop_page
    mov eax, tss_page - KOFF
    or eax, PTE_W | PTE_P
    mov [edx + IO_PT_K], eax
    or edx, PTE_W | PTE_P
    mov [ebx + PD_IO_KOFF], edx
    cmp ebx, [cur_space]
    jne iop_have
    mov cr3, ebx                        ; the old translations of the bitmap go
iop_have:
    and edx, PAGE_MASK
    lea eax, [edx + KOFF]
iop_out:
    pop edi
    pop edx
    pop ecx
    pop ebx
    ret
iop_oom:
    mov eax, [edx + IO_PT_K + 4] ; the first bitmap page, if it was allocated
    test eax, eax
    jz iop_oom_pt
    and eax, PAGE_MASK
    call pool_free
iop_oom_pt:
    mov eax, edx
    call pool_free
    xor eax, eax
    jmp iop_out

; io_bit: eax = kernel address of an I/O page table, ecx = port -> eax = kernel address of
; the bitmap byte, edx = the bit's mask.  Clobbers nothing else.
io_bit:
    push ecx
    mov edx, ecx
    shr edx, 15                         ; which page
    mov eax, [eax + edx*4 + IO_PT_OFF + 4]
    and eax, PAGE_MASK
    mov edx, ecx
    shr edx, 3
    and edx, 0xFFF
    lea eax, [eax + edx + KOFF]
    and ecx, 7
    mov edx, 1
    shl edx, cl
    pop ecx
    ret

; io_map: from ipc_transfer; esi = sender, edi = receiver (with a receive window), ecx = an I/O
; flexpage (L4_IOFPAGE_*: port base, log2 size, grant).  Every port of the range the sender
; may use becomes the receiver's; with grant the sender loses it.  eax = 0, or
; L4_IPC_SEMAPFAILED when the pool is empty.  Preserves ebx, esi, edi, ebp.
io_map:
    push ebx
    push ebp
    mov eax, ecx
    shr eax, L4_FPAGE_SIZE_SHIFT
    and eax, L4_FPAGE_SIZE_MASK
    cmp eax, 16
    jbe iom_size
    mov eax, 16
iom_size:
    push ecx
    mov ecx, eax
    mov ebp, 1
    shl ebp, cl                         ; ports
    pop ecx
    mov ebx, ecx
    shr ebx, L4_IOFPAGE_PORT_SHIFT
    and ebx, 0xFFFF
    mov eax, ebp
    dec eax
    not eax
    and ebx, eax                        ; aligned to the size
    and ecx, L4_FPAGE_GRANT
    mov [iom_grant], ecx
    mov eax, [esi + TCB_SPACE]
    mov edx, [eax + PD_IO_KOFF]
    and edx, PAGE_MASK
    cmp edx, [io_deny_pt]
    je iom_done                         ; the sender has no ports
    add edx, KOFF
    mov [iom_src], edx
    mov eax, [edi + TCB_SPACE]
    call io_private
    test eax, eax
    jz iom_oom
    mov [iom_dst], eax
    mov eax, [esi + TCB_SPACE]          ; the mapping database records each port given
    mov [mf_sspace], eax
    mov eax, [edi + TCB_SPACE]
    mov [mf_rspace], eax
    mov eax, [iom_grant]
    mov [mf_move], eax
iom_loop:
    mov ecx, ebx
    mov eax, [iom_dst]
    call io_bit
    test [eax], dl
    jz iom_next                         ; the receiver has it already: nothing changes
    mov eax, [iom_src]
    call io_bit
    test [eax], dl
    jnz iom_next                        ; the sender may not use it
    mov eax, ebx
    shl eax, 12
    or eax, MN_IO_KEY
    mov [mf_skey], eax
    mov [mf_dkey], eax
    call mdb_link                       ; a child of the sender's node, or (grant) its node
    test eax, eax
    jz iom_oom
    mov eax, [iom_src]
    call io_bit
    cmp dword ptr [iom_grant], 0
    je iom_give
    or [eax], dl
iom_give:
    mov eax, [iom_dst]
    call io_bit
    not edx
    and [eax], dl
iom_next:
    inc ebx
    dec ebp
    jnz iom_loop
iom_done:
    xor eax, eax
    pop ebp
    pop ebx
    ret
iom_oom:
    mov eax, L4_IPC_SEMAPFAILED
    pop ebp
    pop ebx
    ret

; io_unmap: from sys_fpage_unmap; eax = an I/O flexpage, ecx = mask, ebp = the caller.  Each
; port of the range the caller may use is taken from every task it was given to from the
; caller's, recursively (the mapping database, as memory); with L4_FP_ALL_SPACES from the
; caller too.  Ports have no read-only: any mask revokes.  Clobbers all but ebp.
io_unmap:
    or ecx, L4_FP_FLUSH_PAGE
    mov edx, eax
    shr edx, L4_FPAGE_SIZE_SHIFT
    and edx, L4_FPAGE_SIZE_MASK
    cmp edx, 16
    jbe ioun_size
    mov edx, 16
ioun_size:
    push ecx
    mov ecx, edx
    mov edi, 1
    shl edi, cl                         ; ports
    pop ecx
    mov ebx, eax
    shr ebx, L4_IOFPAGE_PORT_SHIFT
    and ebx, 0xFFFF
    lea eax, [edi - 1]
    not eax
    and ebx, eax                        ; the first port, aligned to the size
    mov esi, [ebp + TCB_SPACE]
    mov eax, [esi + PD_IO_KOFF]
    and eax, PAGE_MASK
    cmp eax, [io_deny_pt]
    je ioun_done                        ; the caller has no ports
    add eax, KOFF
    mov [iom_src], eax
ioun_loop:
    push ecx
    mov ecx, ebx
    mov eax, [iom_src]
    call io_bit
    pop ecx
    test [eax], dl
    jnz ioun_next                       ; not the caller's
    push eax
    mov edx, esi
    mov eax, ebx
    shl eax, 12
    or eax, MN_IO_KEY
    call mdb_find
    test eax, eax
    jz ioun_plain
    call mdb_revoke
    pop eax
    jmp ioun_next
ioun_plain:                             ; given at boot (no node): nothing derived from it
    pop eax
    test ecx, L4_FP_ALL_SPACES
    jz ioun_next
    push ecx
    mov ecx, ebx
    mov eax, [iom_src]
    call io_bit
    or [eax], dl
    pop ecx
ioun_next:
    inc ebx
    dec edi
    jnz ioun_loop
ioun_done:
    ret

; io_space_gone: eax = page directory (physical) of a space being destroyed, edx = its own I/O
; table (physical): every port it has goes, with all given on from it (recursively).
; Preserves all.
io_space_gone:
    pushad
    mov esi, eax
    lea edi, [edx + KOFF]
    xor ebx, ebx                        ; port
isg_loop:
    mov ecx, ebx
    mov eax, edi
    call io_bit
    test ebx, 31
    jnz isg_bit
    cmp dword ptr [eax], -1             ; 32 ports it does not have
    jne isg_bit
    add ebx, 32
    jmp isg_more
isg_bit:
    test [eax], dl
    jnz isg_next
    mov edx, esi
    mov eax, ebx
    shl eax, 12
    or eax, MN_IO_KEY
    call mdb_find
    test eax, eax
    jz isg_next
    mov ecx, L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES
    call mdb_revoke
isg_next:
    inc ebx
isg_more:
    cmp ebx, IO_PORTS_ALL
    jb isg_loop
    popad
    ret

; io_allow_all: eax = page directory: every port (sigma0 and the root task at boot).
io_allow_all:
    call io_private
    test eax, eax
    jz boot_oom
    push edi
    push ecx
    mov edx, eax
    mov ecx, 1
iaa_page:
    mov eax, [edx + ecx*4 + IO_PT_OFF]
    and eax, PAGE_MASK
    lea edi, [eax + KOFF]
    push ecx
    xor eax, eax
    mov ecx, 1024
    rep stosd
    pop ecx
    inc ecx
    cmp ecx, 2
    jbe iaa_page
    pop ecx
    pop edi
    ret

; space_create -> eax = a new page directory (physical): empty user half, the shared kernel
; half; 0 if the pool is empty.  Preserves all else.
space_create:
    call pool_alloc
    test eax, eax
    jz sc_done
    push ecx
    push esi
    push edi
    lea edi, [eax + PD_KERNEL_HALF]
    mov esi, master_pd + PDE_KERNEL_FIRST * 4
    mov ecx, PDE_KERNEL_COUNT
    rep movsd dword ptr es:[edi], dword ptr [esi]
    pop edi
    pop esi
    pop ecx
sc_done:
    ret

; space_destroy: eax = page directory.  Frees it and its user page tables.  Clobbers eax.
space_destroy:
    push ebx
    push ecx
    push edx
    cmp eax, [cur_space]                ; never free the directory in CR3
    jne sd_not_current
    mov ecx, master_pd - KOFF
    mov cr3, ecx
    mov [cur_space], ecx
sd_not_current:
    call mdb_space_gone                 ; its mappings and all derived from them go
    lea ebx, [eax + KOFF]
    xor ecx, ecx
sd_loop:
    mov edx, [ebx + ecx*4]
    test edx, PTE_P
    jz sd_next
    test edx, PTE_PS
    jnz sd_next
    push eax
    mov eax, edx
    and eax, PAGE_MASK
    call pool_free
    pop eax
sd_next:
    inc ecx
    cmp ecx, PDE_KERNEL_FIRST
    jb sd_loop
    mov edx, [ebx + PD_IO_OFF]         ; its own I/O bitmap: two pages and the table
    and edx, PAGE_MASK
    cmp edx, [io_deny_pt]
    je sd_free
    call io_space_gone                  ; its ports and all given on from them go
    push eax
    mov eax, [edx + IO_PT_K + 4]
    and eax, PAGE_MASK
    call pool_free
    mov eax, [edx + IO_PT_K + 8]
    and eax, PAGE_MASK
    call pool_free
    mov eax, edx
    call pool_free
    pop eax
sd_free:
    call pool_free
    pop edx
    pop ecx
    pop ebx
    ret

; space_lookup: edx = page directory, eax = virtual address -> eax = physical address of
; its page, 0 if not mapped.  Clobbers edx.
space_lookup:
    push ecx
    mov ecx, eax
    shr ecx, 22
    add edx, KOFF
    mov ecx, [edx + ecx*4]
    test ecx, PTE_P
    jz sl_none
    test ecx, PTE_PS
    jnz sl_super
    and ecx, PAGE_MASK
    shr eax, 12
    and eax, 0x3FF
    mov eax, [ecx + eax*4 + KOFF]
    test eax, PTE_P
    jz sl_none
    and eax, PAGE_MASK
    pop ecx
    ret
sl_super:
    and ecx, SUPER_MASK
    and eax, 0x3FF000
    or eax, ecx
    pop ecx
    ret
sl_none:
    xor eax, eax
    pop ecx
    ret

; space_set_pte: edx = page directory, eax = virtual address, ecx = entry.  Allocates the page
; table if needed.  eax = 1, or 0 when the pool is empty (or a 4 MiB page is in the way).
; Clobbers edx.
space_set_pte:
    push ebx
    push esi
    mov ebx, eax
    shr ebx, 22
    lea esi, [edx + KOFF]
    mov edx, [esi + ebx*4]
    test edx, PTE_P
    jnz ssp_have
    push eax
    call pool_alloc
    test eax, eax
    jz ssp_oom
    or eax, PTE_U | PTE_W | PTE_P
    mov [esi + ebx*4], eax
    mov edx, eax
    pop eax
ssp_have:
    test edx, PTE_PS
    jnz ssp_fail
    and edx, PAGE_MASK
    shr eax, 12
    and eax, 0x3FF
    mov [edx + eax*4 + KOFF], ecx
    mov eax, 1
    pop esi
    pop ebx
    ret
ssp_oom:
    pop eax
ssp_fail:
    xor eax, eax
    pop esi
    pop ebx
    ret

; map_fpage: esi = sender TCB, edi = receiver TCB, eax = receive window (descriptor with the
; fpage in bits 2..), edx = send base, ecx = send fpage.  eax = 0, or 1 when the pool ran dry
; (what was mapped so far stays).  Preserves esi, edi, ebp; clobbers ebx, ecx, edx.
map_fpage:
    push ebp
    mov [mf_hint], edx
    mov ebx, ecx
    and ebx, L4_FPAGE_WRITE
    mov [mf_write], ebx
    mov ebx, ecx
    and ebx, L4_FPAGE_GRANT
    mov [mf_grant], ebx
    mov ebx, ecx                        ; send size
    shr ebx, L4_FPAGE_SIZE_SHIFT
    and ebx, L4_FPAGE_SIZE_MASK
    cmp ebx, L4_PAGESHIFT
    jb mf_refused
    cmp ebx, 32
    jbe mf_s_ok
    mov ebx, 32
mf_s_ok:
    mov edx, eax                        ; window size
    shr edx, L4_FPAGE_SIZE_SHIFT
    and edx, L4_FPAGE_SIZE_MASK
    cmp edx, L4_PAGESHIFT
    jb mf_refused
    cmp edx, 32
    jbe mf_r_ok
    mov edx, 32
mf_r_ok:
    push ecx
    lea ecx, [ebx - 1]
    mov ebp, 2
    shl ebp, cl
    dec ebp                             ; send mask: 2^s - 1 (all ones for 32)
    mov [mf_smask], ebp
    lea ecx, [edx - 1]
    mov ebp, 2
    shl ebp, cl
    dec ebp
    mov [mf_rmask], ebp                 ; window mask
    pop ecx
    mov ebp, [mf_smask]
    not ebp
    and ecx, ebp                        ; send fpage base
    mov ebp, [mf_rmask]
    not ebp
    and eax, ebp                        ; window base
    cmp ebx, edx
    ja mf_send_larger
    ; the send fpage fits: it goes where the send base says inside the window
    mov ebp, [mf_hint]
    and ebp, [mf_rmask]
    mov edx, [mf_smask]
    not edx
    and ebp, edx
    add eax, ebp
    mov [mf_dst], eax
    mov [mf_src], ecx
    mov eax, [mf_smask]
    jmp mf_range
mf_send_larger:                         ; the window-sized part the send base picks
    mov ebp, [mf_hint]
    and ebp, [mf_smask]
    mov edx, [mf_rmask]
    not edx
    and ebp, edx
    add ecx, ebp
    mov [mf_src], ecx
    mov [mf_dst], eax
    mov eax, [mf_rmask]
mf_range:                               ; eax = size mask
    shr eax, 12
    inc eax
    mov [mf_pages], eax
    mov eax, [mf_src]                   ; clip to user space
    mov edx, [mf_dst]
    cmp eax, edx
    jae mf_clip_max
    mov eax, edx
mf_clip_max:
    cmp eax, L4_USER_LIMIT
    jae mf_refused
    mov edx, L4_USER_LIMIT
    sub edx, eax
    shr edx, 12
    cmp edx, [mf_pages]
    jae mf_clipped
    mov [mf_pages], edx
mf_clipped:
    mov eax, [esi + TCB_SPACE]
    mov [mf_sspace], eax
    add eax, KOFF
    mov [mf_spd], eax
    mov eax, [edi + TCB_SPACE]
    mov [mf_rspace], eax
    add eax, KOFF
    mov [mf_rpd], eax
    mov dword ptr [mf_i], 0
mf_loop:
    mov eax, [mf_i]
    cmp eax, [mf_pages]
    jae mf_done
    shl eax, 12
    mov ecx, eax
    add eax, [mf_src]                   ; eax = source address
    add ecx, [mf_dst]                   ; ecx = destination address
    mov edx, eax
    shr edx, 22
    mov ebx, [mf_spd]
    lea ebx, [ebx + edx*4]              ; &source PDE
    mov edx, [ebx]
    test edx, PTE_P
    jz mf_skip_super
    test edx, PTE_PS
    jz mf_src_pt
    ; a 4 MiB source page: whole if both sides are aligned and 1024 pages remain
    mov ebp, eax
    or ebp, ecx
    test ebp, 0x3FFFFF
    jnz mf_super_part
    mov ebp, [mf_pages]
    sub ebp, [mf_i]
    cmp ebp, 1024
    jb mf_super_part
    mov ebp, edx
    and ebp, SUPER_MASK | PTE_W
    or ebp, PTE_PS | PTE_U | PTE_P
    cmp dword ptr [mf_write], 0
    jne mf_super_w
    and ebp, 0xFFFFFFFD
mf_super_w:
    mov [mf_entry], ebp
    or eax, MN_SUPER
    mov [mf_skey], eax
    mov eax, [mf_grant]
    mov [mf_move], eax
    mov eax, ecx
    or eax, MN_SUPER
    mov [mf_dkey], eax
    cmp eax, [mf_skey]                  ; onto itself: nothing to do
    jne mf_super_other
    mov eax, [mf_sspace]
    cmp eax, [mf_rspace]
    je mf_super_next
mf_super_other:
    push ebx                            ; &source PDE
    shr ecx, 22
    mov ebx, [mf_rpd]
    lea ebx, [ebx + ecx*4]              ; &destination PDE
    mov eax, [ebx]
    test eax, PTE_P
    jz mf_super_free
    test eax, PTE_PS
    jz mf_super_pt
    cmp dword ptr [mf_grant], 0         ; a 4 MiB mapping there: the same one again?
    jne mf_super_drop
    call mdb_same
    jne mf_super_drop
    mov [ebx], ebp                      ; only the rights change
    pop ebx
    jmp mf_super_next
mf_super_drop:                          ; the old mapping goes (recursively); then again
    pop ebx
    mov edx, [mf_rspace]
    mov eax, [mf_dkey]
    call mdb_drop
    jmp mf_loop
mf_super_pt:                            ; a page table: its mappings go, then the table
    mov edx, [mf_rspace]
    mov ecx, [mf_dkey]
    and ecx, SUPER_MASK
    call mf_drop_pt
    pop ebx
    jmp mf_loop
mf_super_free:
    call mdb_link
    test eax, eax
    jz mf_super_oom
    mov [ebx], ebp
    pop ebx
    cmp dword ptr [mf_grant], 0
    je mf_super_next
    mov dword ptr [ebx], 0
mf_super_next:
    add dword ptr [mf_i], 1024
    jmp mf_loop
mf_super_oom:
    pop ebx
    jmp mf_oom
mf_super_part:                          ; one 4 KiB piece of it
    mov ebp, eax
    and ebp, 0x3FF000
    and edx, SUPER_MASK | PTE_W
    or edx, ebp
    mov dword ptr [mf_spte], 0          ; (a granted piece of a 4 MiB page stays mapped)
    and eax, SUPER_MASK
    or eax, MN_SUPER
    mov [mf_skey], eax                  ; its node is the 4 MiB page's
    jmp mf_install
mf_src_pt:
    and edx, PAGE_MASK
    mov ebp, eax
    shr ebp, 12
    and ebp, 0x3FF
    lea ebp, [edx + ebp*4 + KOFF]       ; &source PTE
    mov edx, [ebp]
    test edx, PTE_P
    jz mf_next
    mov [mf_spte], ebp
    and eax, PAGE_MASK
    mov [mf_skey], eax
mf_install:                             ; edx = frame | W of the source, ecx = destination
    and edx, PAGE_MASK | PTE_W
    or edx, PTE_U | PTE_P
    cmp dword ptr [mf_write], 0
    jne mf_w_ok
    and edx, 0xFFFFFFFD
mf_w_ok:
    mov [mf_entry], edx
    mov [mf_dkey], ecx
    xor eax, eax
    cmp dword ptr [mf_spte], 0
    je mf_no_move
    mov eax, [mf_grant]
mf_no_move:
    mov [mf_move], eax
    cmp ecx, [mf_skey]                  ; onto itself: nothing to do
    jne mf_other
    mov eax, [mf_sspace]
    cmp eax, [mf_rspace]
    je mf_next
mf_other:
    mov eax, ecx
    shr eax, 22
    mov ebx, [mf_rpd]
    lea ebx, [ebx + eax*4]              ; &destination PDE
    mov eax, [ebx]
    test eax, PTE_P
    jz mf_new_pt
    test eax, PTE_PS
    jz mf_have_pt
    mov edx, [mf_rspace]                ; a 4 MiB mapping there: split into 4 KiB mappings
    mov eax, ecx                        ; (mapdb.asm), then again: the piece is replaced
    call mdb_split
    jc mf_oom
    jmp mf_loop
mf_new_pt:
    call pool_alloc
    test eax, eax
    jz mf_oom
    or eax, PTE_U | PTE_W | PTE_P
    mov [ebx], eax
mf_have_pt:
    and eax, PAGE_MASK
    shr ecx, 12
    and ecx, 0x3FF
    lea ebx, [eax + ecx*4 + KOFF]       ; &destination PTE
    mov eax, [ebx]
    test eax, PTE_P
    jz mf_dst_free
    cmp dword ptr [mf_grant], 0         ; something there: the same mapping again?
    jne mf_dst_drop
    call mdb_same
    jne mf_dst_drop
    mov edx, [mf_entry]                 ; only the rights change
    mov [ebx], edx
    jmp mf_next
mf_dst_drop:                            ; the old mapping goes (recursively); then again
    mov edx, [mf_rspace]
    mov eax, [mf_dkey]
    call mdb_drop
    jmp mf_loop
mf_dst_free:
    call mdb_link
    test eax, eax
    jz mf_oom
    mov edx, [mf_entry]
    mov [ebx], edx
    cmp dword ptr [mf_move], 0
    je mf_next
    mov eax, [mf_spte]
    mov dword ptr [eax], 0
mf_next:
    inc dword ptr [mf_i]
    jmp mf_loop
mf_skip_super:                          ; nothing in the source's 4 MiB: skip to its end
    shr eax, 12
    and eax, 0x3FF
    mov edx, 1024
    sub edx, eax
    add [mf_i], edx
    jmp mf_loop
mf_done:
    mov eax, [edi + TCB_SPACE]          ; flush what may be cached
    cmp eax, [cur_space]
    je mf_flush
    cmp dword ptr [mf_grant], 0
    je mf_nothing
mf_flush:
    mov eax, cr3
    mov cr3, eax
mf_nothing:
    xor eax, eax
    pop ebp
    ret
mf_refused:                             ; too small or beyond user space: an I/O flexpage or an
    cmp dword ptr [esi + TCB_MSG1], L4_IOFPAGE_MARK     ; exception message? (ipc.asm)
    jb mf_nothing
    mov eax, 2
    pop ebp
    ret
mf_oom:
    mov eax, 1
    pop ebp
    ret

; mf_drop_pt: edx = space, ebx = &PDE of a page table, ecx = the 4 MiB's base: every mapping
; in the table goes (recursively), then the table.  Preserves all but eax.
mf_drop_pt:
    push esi
    push edi
    mov esi, [ebx]
    and esi, PAGE_MASK
    add esi, KOFF
    xor edi, edi
mfd_loop:
    test dword ptr [esi + edi*4], PTE_P
    jz mfd_next
    mov eax, edi
    shl eax, 12
    or eax, ecx
    call mdb_drop
mfd_next:
    inc edi
    cmp edi, 1024
    jb mfd_loop
    mov eax, [ebx]
    mov dword ptr [ebx], 0
    and eax, PAGE_MASK
    call pool_free
    cmp edx, [cur_space]
    jne mfd_done
    mov eax, cr3
    mov cr3, eax
mfd_done:
    pop edi
    pop esi
    ret

; fpage_unmap (EAX = fpage, ECX = mask: L4_FP_FLUSH_PAGE removes, otherwise read-only;
; L4_FP_ALL_SPACES includes the caller's own space).  Without a mapping database (part 1)
; only the caller's own space can be reached, so without L4_FP_ALL_SPACES nothing happens.
sys_fpage_unmap:
    mov ecx, [ebx + R_ECX]
    mov eax, [ebx + R_EAX]
    cmp eax, L4_IOFPAGE_MARK
    jae io_unmap
    mov edx, eax
    shr edx, L4_FPAGE_SIZE_SHIFT
    and edx, L4_FPAGE_SIZE_MASK
    cmp edx, L4_PAGESHIFT
    jb fu_done
    cmp edx, 32
    jbe fu_size_ok
    mov edx, 32
fu_size_ok:
    push ecx
    lea ecx, [edx - 1]
    mov edx, 2
    shl edx, cl
    dec edx                             ; size mask
    pop ecx
    mov esi, edx
    not esi
    and eax, esi                        ; base
    shr edx, 12
    inc edx                             ; pages
    cmp eax, L4_USER_LIMIT
    jae fu_done
    mov esi, L4_USER_LIMIT
    sub esi, eax
    shr esi, 12
    cmp edx, esi
    jbe fu_range_ok
    mov edx, esi
fu_range_ok:
    mov edi, [ebp + TCB_SPACE]
    add edi, KOFF                       ; page directory
fu_loop:
    test edx, edx
    jz fu_flush
    mov esi, eax
    shr esi, 22
    lea esi, [edi + esi*4]              ; &PDE
    mov ebx, [esi]
    test ebx, PTE_P
    jz fu_skip_super
    test ebx, PTE_PS
    jz fu_pt
    test eax, 0x3FFFFF                  ; a 4 MiB page wholly inside: as one
    jnz fu_split
    cmp edx, 1024
    jb fu_split
    or eax, MN_SUPER
    call fu_apply
    and eax, PAGE_MASK
    add eax, 0x400000
    sub edx, 1024
    jmp fu_loop
fu_split:                               ; a part of a 4 MiB page: it becomes 4 KiB pages
    push edx                            ; (mapdb.asm mdb_split), then again
    mov edx, [ebp + TCB_SPACE]
    call mdb_split
    pop edx
    jc fu_split_failed
    jmp fu_loop
fu_split_failed:                        ; no kernel memory for it: the whole 4 MiB page is
    push eax                            ; revoked instead (more than asked, never less)
    and eax, SUPER_MASK
    or eax, MN_SUPER
    call fu_apply
    pop eax
    jmp fu_skip_super
fu_pt:
    and ebx, PAGE_MASK
    push eax
    shr eax, 12
    and eax, 0x3FF
    lea esi, [ebx + eax*4 + KOFF]       ; &PTE
    pop eax
    mov ebx, [esi]
    test ebx, PTE_P
    jz fu_next
    call fu_apply
fu_next:
    add eax, 0x1000
    dec edx
    jmp fu_loop
fu_skip_super:
    push ecx
    mov ecx, eax
    shr ecx, 12
    and ecx, 0x3FF
    neg ecx
    add ecx, 1024                       ; pages to the next 4 MiB boundary
    cmp ecx, edx
    jbe fu_skip_n
    mov ecx, edx
fu_skip_n:
    sub edx, ecx
    shl ecx, 12
    add eax, ecx
    pop ecx
    jmp fu_loop
fu_flush:
    mov eax, cr3
    mov cr3, eax
fu_done:
    ret
; fu_apply: esi = &entry, ebx = entry, eax = its key (address, | MN_SUPER for 4 MiB), ecx =
; mask, ebp = the caller.  Everything mapped from it goes or becomes read-only; with
; L4_FP_ALL_SPACES the caller's own mapping too.  Preserves all.
fu_apply:
    push eax
    push edx
    mov edx, [ebp + TCB_SPACE]
    call mdb_find
    test eax, eax
    jz fu_plain
    call mdb_revoke
    pop edx
    pop eax
    ret
fu_plain:                               ; a boot mapping (no node): nothing derived from it
    pop edx
    pop eax
    test ecx, L4_FP_ALL_SPACES
    jz fu_apply_done
    test ecx, L4_FP_FLUSH_PAGE
    jz fu_readonly
    mov dword ptr [esi], 0
    ret
fu_readonly:
    and ebx, 0xFFFFFFFD
    mov [esi], ebx
fu_apply_done:
    ret

.section .rodata
msg_small_ram:
    .asciz "not enough RAM for the kernel pool"

.section .data
.align 4
pool_start: .long 0
pool_end: .long 0
pool_next: .long 0
pool_free_list: .long 0
pool_used: .long 0
zero_page: .long 0
tcb_ptes: .long 0                       ; kernel address of the TCB area's first PTE
mf_hint: .long 0
mf_write: .long 0
mf_grant: .long 0
mf_smask: .long 0
mf_rmask: .long 0
mf_src: .long 0
mf_dst: .long 0
mf_pages: .long 0
mf_i: .long 0
mf_spd: .long 0
mf_rpd: .long 0
mf_spte: .long 0
mf_entry: .long 0
mf_sspace: .long 0                      ; page directories (physical) of sender and receiver
mf_rspace: .long 0
mf_skey: .long 0                        ; the mapping database keys of source and destination
mf_dkey: .long 0
mf_move: .long 0                        ; grant of a whole entry: the node moves
io_deny_pt: .long 0                     ; the shared I/O table (every port denied)
iom_src: .long 0
iom_dst: .long 0
iom_grant: .long 0

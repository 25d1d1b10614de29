; kernel/mapdb.asm: the mapping database (docs/abi.md "Mapping database").
;
; One node (MN_SIZE bytes, from pool frames carved into nodes) per mapping the kernel
; installed by map or grant: the space (page directory, physical) and the key (the virtual
; page, or a 4 MiB page's base | MN_SUPER), the parent (the mapping it was derived from, 0 for
; a tree's root), the first child and the next sibling.  A hash table (one pool frame,
; MDB_BUCKETS chains) finds the node of (space, key).  Mappings the kernel made at boot (the
; boot images, sigma0's 1:1 memory) have no node until they are first mapped on: then a root
; node (no parent) is made for them.  Nodes go back to the node free list, never to the pool.
;
; Revocation walks a subtree without recursion (the kernel stack is small): a flush removes
; leaves, always its parent's first child, going back up to the parent; read-only is a
; pre-order walk.  Every entry changed in the current space is invalidated with invlpg; other
; spaces are flushed by their next CR3 load.

.section .text
; mdb_init: the hash table and a few frames of nodes (boot).
mdb_init:
    call pool_alloc
    test eax, eax
    jz boot_oom
    add eax, KOFF
    mov [mdb_hash], eax
    mov ecx, MDB_BOOT_FRAMES
dbi_loop:
    push ecx
    call mdb_grow
    pop ecx
    test eax, eax
    jz boot_oom
    loop dbi_loop
    ret

; mdb_grow: one pool frame of nodes onto the free list; eax = 0 when the pool is empty.
; Preserves all else.
mdb_grow:
    call pool_alloc
    test eax, eax
    jz dbg_out
    push ecx
    push edx
    add eax, KOFF
    mov ecx, 128                        ; 4096 / MN_SIZE
dbg_loop:
    mov edx, [mdb_free]
    mov [eax + MN_HNEXT], edx
    mov [mdb_free], eax
    add eax, MN_SIZE
    loop dbg_loop
    pop edx
    pop ecx
    mov eax, 1
dbg_out:
    ret

; mdb_new -> eax = a node with no parent, child or sibling; 0 when the pool is empty.
mdb_new:
    mov eax, [mdb_free]
    test eax, eax
    jnz dbn_have
    call mdb_grow
    test eax, eax
    jz dbn_out
    mov eax, [mdb_free]
dbn_have:
    push edx
    mov edx, [eax + MN_HNEXT]
    mov [mdb_free], edx
    xor edx, edx
    mov [eax + MN_PARENT], edx
    mov [eax + MN_CHILD], edx
    mov [eax + MN_SIBLING], edx
    pop edx
dbn_out:
    ret

; mdb_bucket: edx = space, eax = key -> eax = kernel address of its hash chain's head.
mdb_bucket:
    push edx
    shr eax, 12
    shr edx, 7
    xor eax, edx
    and eax, MDB_BUCKETS - 1
    shl eax, 2
    add eax, [mdb_hash]
    pop edx
    ret

; mdb_find: edx = space, eax = key -> eax = its node, 0 if none.  Preserves all else.
mdb_find:
    push ecx
    mov ecx, eax
    call mdb_bucket
    mov eax, [eax]
dbf_loop:
    test eax, eax
    jz dbf_out
    cmp [eax + MN_KEY], ecx
    jne dbf_next
    cmp [eax + MN_SPACE], edx
    je dbf_out
dbf_next:
    mov eax, [eax + MN_HNEXT]
    jmp dbf_loop
dbf_out:
    pop ecx
    ret

; mdb_hash_in: eax = node (space and key set) into its chain.  Preserves all.
mdb_hash_in:
    push ecx
    push edx
    mov ecx, eax
    mov edx, [ecx + MN_SPACE]
    mov eax, [ecx + MN_KEY]
    call mdb_bucket
    mov edx, [eax]
    mov [ecx + MN_HNEXT], edx
    mov [eax], ecx
    mov eax, ecx
    pop edx
    pop ecx
    ret

; mdb_hash_out: eax = node out of its chain.  Preserves all.
mdb_hash_out:
    push ecx
    push edx
    mov ecx, eax
    mov edx, [ecx + MN_SPACE]
    mov eax, [ecx + MN_KEY]
    call mdb_bucket
dbo_loop:
    mov edx, [eax]
    test edx, edx
    jz dbo_out
    cmp edx, ecx
    je dbo_found
    lea eax, [edx + MN_HNEXT]
    jmp dbo_loop
dbo_found:
    mov edx, [ecx + MN_HNEXT]
    mov [eax], edx
dbo_out:
    mov eax, ecx
    pop edx
    pop ecx
    ret

; mdb_release: eax = node (detached, no children): out of the hash, onto the free list.
mdb_release:
    call mdb_hash_out
    push edx
    mov edx, [mdb_free]
    mov [eax + MN_HNEXT], edx
    mov [mdb_free], eax
    pop edx
    ret

; mdb_detach: eax = node out of its parent's child list.  Preserves all.
mdb_detach:
    push ecx
    push edx
    mov ecx, [eax + MN_PARENT]
    test ecx, ecx
    jz dbd_out
    add ecx, MN_CHILD                   ; ecx = the link that may point to it
dbd_loop:
    mov edx, [ecx]
    test edx, edx
    jz dbd_out
    cmp edx, eax
    je dbd_found
    lea ecx, [edx + MN_SIBLING]
    jmp dbd_loop
dbd_found:
    mov edx, [eax + MN_SIBLING]
    mov [ecx], edx
dbd_out:
    pop edx
    pop ecx
    ret

; mdb_entry_at: edx = space, eax = key -> eax = kernel address of its page-table entry (the
; PDE for a 4 MiB key), 0 if there is no page table.  Preserves all else.
mdb_entry_at:
    push ecx
    push edx
    mov ecx, eax
    add edx, KOFF
    shr eax, 22
    lea eax, [edx + eax*4]              ; &PDE
    test ecx, MN_SUPER
    jnz dbe_out
    mov edx, [eax]
    test edx, PTE_P
    jz dbe_none
    test edx, PTE_PS
    jnz dbe_none
    and edx, PAGE_MASK
    shr ecx, 12
    and ecx, 0x3FF
    lea eax, [edx + ecx*4 + KOFF]
dbe_out:
    pop edx
    pop ecx
    ret
dbe_none:
    xor eax, eax
    jmp dbe_out

; mdb_apply: eax = node, ecx = mask: its entry is cleared (L4_FP_FLUSH_PAGE) or made
; read-only, and invalidated if its space is the current one; an I/O port's node (key
; MN_IO_KEY | port << 12) is always taken away: its bit in the space's I/O bitmap is set.
; Preserves all.
mdb_apply:
    push eax
    push edx
    push ebx
    mov ebx, eax
    mov edx, [ebx + MN_SPACE]
    mov eax, [ebx + MN_KEY]
    cmp eax, MN_IO_KEY
    jae dba_io
    call mdb_entry_at
    test eax, eax
    jz dba_out
    test ecx, L4_FP_FLUSH_PAGE
    jz dba_ro
    mov dword ptr [eax], 0
    jmp dba_tlb
dba_ro:
    and dword ptr [eax], 0xFFFFFFFD
dba_tlb:
    cmp edx, [cur_space]
    jne dba_out
    mov eax, [ebx + MN_KEY]
    and eax, PAGE_MASK
    invlpg [eax]
dba_out:
    pop ebx
    pop edx
    pop eax
    ret
dba_io:
    push ecx
    mov ecx, eax
    shr ecx, 12
    and ecx, 0xFFFF                     ; the port
    mov eax, [edx + PD_IO_KOFF]
    and eax, PAGE_MASK
    cmp eax, [io_deny_pt]
    je dba_io_out                       ; (it has no ports at all)
    add eax, KOFF
    call io_bit
    or [eax], dl
dba_io_out:
    pop ecx
    jmp dba_out

; mdb_revoke: eax = node, ecx = mask (L4_FP_FLUSH_PAGE: remove, else read-only;
; L4_FP_ALL_SPACES: the node's own mapping too).  Every mapping derived from it, directly or
; indirectly, is flushed (and its node freed) or made read-only.  Preserves all.
mdb_revoke:
    push eax
    push ebx
    push edx
    mov ebx, eax                        ; the top
    mov edx, eax
    test ecx, L4_FP_FLUSH_PAGE
    jz dbr_ro
dbr_f_loop:                             ; flush: down the first children to a leaf ...
    mov eax, [edx + MN_CHILD]
    test eax, eax
    jz dbr_f_leaf
    mov edx, eax
    jmp dbr_f_loop
dbr_f_leaf:                             ; ... remove it and go on from its parent
    cmp edx, ebx
    je dbr_self
    mov eax, edx
    call mdb_apply
    mov edx, [eax + MN_PARENT]
    push ecx
    mov ecx, [eax + MN_SIBLING]
    mov [edx + MN_CHILD], ecx
    pop ecx
    call mdb_release
    jmp dbr_f_loop
dbr_ro:                                 ; read-only: pre-order
    mov edx, [ebx + MN_CHILD]
dbr_r_loop:
    test edx, edx
    jz dbr_self
    mov eax, edx
    call mdb_apply
    mov eax, [edx + MN_CHILD]
    test eax, eax
    jnz dbr_r_down
dbr_r_up:
    mov eax, [edx + MN_SIBLING]
    test eax, eax
    jnz dbr_r_down
    mov edx, [edx + MN_PARENT]
    cmp edx, ebx
    jne dbr_r_up
    jmp dbr_self
dbr_r_down:
    mov edx, eax
    jmp dbr_r_loop
dbr_self:
    test ecx, L4_FP_ALL_SPACES
    jz dbr_out
    mov eax, ebx
    call mdb_apply
    test ecx, L4_FP_FLUSH_PAGE
    jz dbr_out
    call mdb_detach
    call mdb_release
dbr_out:
    pop edx
    pop ebx
    pop eax
    ret

; mdb_drop: edx = space, eax = key: the mapping there goes, with all derived from it (a
; mapping without a node is just removed).  Preserves all.
mdb_drop:
    push eax
    push ecx
    push eax
    call mdb_find
    test eax, eax
    jz dbx_plain
    add esp, 4
    mov ecx, L4_FP_FLUSH_PAGE | L4_FP_ALL_SPACES
    call mdb_revoke
    jmp dbx_out
dbx_plain:
    pop eax
    call mdb_entry_at
    test eax, eax
    jz dbx_out
    mov dword ptr [eax], 0
    cmp edx, [cur_space]
    jne dbx_out
    mov eax, [esp + 4]
    and eax, PAGE_MASK
    invlpg [eax]
dbx_out:
    pop ecx
    pop eax
    ret

; mdb_space_gone: eax = page directory (physical) of a space being destroyed: every user
; mapping in it goes, recursively (V2: deleting a task flushes what it mapped).  Preserves all.
mdb_space_gone:
    pushad
    mov edx, eax
    lea ebx, [eax + KOFF]
    xor ecx, ecx
dbs_pde:
    mov esi, [ebx + ecx*4]
    test esi, PTE_P
    jz dbs_next
    mov eax, ecx
    shl eax, 22
    test esi, PTE_PS
    jz dbs_pt
    or eax, MN_SUPER
    call mdb_drop
    jmp dbs_next
dbs_pt:
    and esi, PAGE_MASK
    add esi, KOFF
    xor edi, edi
dbs_pte:
    test dword ptr [esi + edi*4], PTE_P
    jz dbs_pte_next
    push eax
    push edi
    shl edi, 12
    or eax, edi
    call mdb_drop
    pop edi
    pop eax
dbs_pte_next:
    inc edi
    cmp edi, 1024
    jb dbs_pte
dbs_next:
    inc ecx
    cmp ecx, PDE_KERNEL_FIRST
    jb dbs_pde
    popad
    ret

; mdb_link: for map_fpage.  The mapping [mf_skey] of the sender's space ([mf_sspace]) is
; mapped (or with [mf_move] granted) to [mf_dkey] of the receiver's ([mf_rspace]): a child node
; under the source's (made as a root if it had none), or the source's node moves.  eax = 1,
; 0 when the pool is empty.  Preserves all else.  (On the page-fault path: kept inline.)
mdb_link:
    push ecx
    push edx
    push ebx
    push esi
    mov edx, [mf_sspace]
    mov ecx, [mf_skey]
    mov eax, ecx                        ; the source's chain (as mdb_bucket)
    mov ebx, edx
    shr eax, 12
    shr ebx, 7
    xor eax, ebx
    and eax, MDB_BUCKETS - 1
    mov ebx, [mdb_hash]
    lea ebx, [ebx + eax*4]
    mov esi, [ebx]
dbl_find:
    test esi, esi
    jz dbl_none
    cmp [esi + MN_KEY], ecx
    jne dbl_fnext
    cmp [esi + MN_SPACE], edx
    je dbl_found
dbl_fnext:
    mov esi, [esi + MN_HNEXT]
    jmp dbl_find
dbl_none:
    cmp dword ptr [mf_move], 0
    jne dbl_ok                          ; a grant of an unrecorded mapping: nothing to move
    cmp dword ptr [mdb_free], 0         ; two nodes needed
    je dbl_grow
dbl_have_free:
    mov esi, [mdb_free]                 ; the source's root node
    mov eax, [esi + MN_HNEXT]
    test eax, eax
    jz dbl_grow
    mov [mdb_free], eax
    mov [esi + MN_SPACE], edx
    mov [esi + MN_KEY], ecx
    xor eax, eax
    mov [esi + MN_PARENT], eax
    mov [esi + MN_CHILD], eax
    mov [esi + MN_SIBLING], eax
    mov eax, [ebx]
    mov [esi + MN_HNEXT], eax
    mov [ebx], esi
    jmp dbl_child
dbl_found:
    cmp dword ptr [mf_move], 0
    jne dbl_move
dbl_child:                              ; esi = the source's node
    mov eax, [mdb_free]
    test eax, eax
    jz dbl_grow_child
    mov ebx, [eax + MN_HNEXT]
    mov [mdb_free], ebx
    mov ebx, [mf_rspace]
    mov [eax + MN_SPACE], ebx
    mov ecx, [mf_dkey]
    mov [eax + MN_KEY], ecx
    mov [eax + MN_PARENT], esi
    mov dword ptr [eax + MN_CHILD], 0
    mov edx, [esi + MN_CHILD]
    mov [eax + MN_SIBLING], edx
    mov [esi + MN_CHILD], eax
    shr ecx, 12                         ; into its chain (as mdb_bucket)
    shr ebx, 7
    xor ecx, ebx
    and ecx, MDB_BUCKETS - 1
    mov ebx, [mdb_hash]
    lea ebx, [ebx + ecx*4]
    mov ecx, [ebx]
    mov [eax + MN_HNEXT], ecx
    mov [ebx], eax
dbl_ok:
    mov eax, 1
dbl_out:
    pop esi
    pop ebx
    pop edx
    pop ecx
    ret
dbl_grow:                               ; (rare) another frame of nodes
    call mdb_grow
    test eax, eax
    jz dbl_out
    jmp dbl_have_free
dbl_grow_child:
    call mdb_grow
    test eax, eax
    jz dbl_out
    jmp dbl_child
dbl_move:                               ; grant: the node takes the new place
    mov eax, esi
    call mdb_hash_out
    mov edx, [mf_rspace]
    mov [eax + MN_SPACE], edx
    mov edx, [mf_dkey]
    mov [eax + MN_KEY], edx
    call mdb_hash_in
    jmp dbl_ok

; mdb_same: for map_fpage (a map, not a grant), eax = the receiver's present entry at
; [mf_dkey], [mf_entry] the new one -> ZF set when it is already this mapping (a node whose
; parent is the source's node, or the source itself, on the same frame): only the rights change.
mdb_same:
    push ecx
    push edx
    xor eax, [mf_entry]
    test eax, PAGE_MASK
    jnz dbm_out                         ; another frame (ZF clear)
    mov edx, [mf_rspace]
    mov eax, [mf_dkey]
    call mdb_find
    test eax, eax
    jz dbm_no
    mov ecx, eax
    mov edx, [mf_sspace]
    mov eax, [mf_skey]
    call mdb_find
    test eax, eax
    jz dbm_no
    cmp eax, ecx
    je dbm_out
    cmp eax, [ecx + MN_PARENT]
    jmp dbm_out
dbm_no:
    or eax, 1                           ; ZF clear
dbm_out:
    pop edx
    pop ecx
    ret

; mdb_split: edx = space, eax = an address in a 4 MiB mapping of it (a PDE with PS).  That
; mapping becomes 1024 4 KiB mappings of the same frames and rights in a new page table, and
; so does every 4 MiB mapping derived from it, directly or not; in the database each of their
; nodes becomes 1024 nodes, piece j's parent being piece j of the parent's split (or the
; unsplit 4 MiB parent of the first one), and the 4 KiB mappings made from a 4 MiB page move
; under the piece of their frame.  CF set: not enough kernel memory (nothing changed).
; Preserves all registers.  (Iterative: a pre-order walk over the 4 MiB nodes.)
mdb_split:
    pushad
    and eax, SUPER_MASK
    mov [ms_xspace], edx
    mov [ms_xbase], eax
    or eax, MN_SUPER
    call mdb_find
    mov [ms_top], eax
    mov ecx, 1                          ; how many 4 MiB mappings split
    test eax, eax
    jz ms_reserve
    mov ebx, eax                        ; count the 4 MiB nodes of the subtree
    xor ecx, ecx
msc_visit:
    inc ecx
    mov eax, [ebx + MN_CHILD]
msc_first:
    test eax, eax
    jz msc_up
    test dword ptr [eax + MN_KEY], MN_SUPER
    jnz msc_down
    mov eax, [eax + MN_SIBLING]
    jmp msc_first
msc_down:
    mov ebx, eax
    jmp msc_visit
msc_up:
    cmp ebx, [ms_top]
    je ms_reserve
    mov eax, [ebx + MN_SIBLING]
msc_sib:
    test eax, eax
    jz msc_parent
    test dword ptr [eax + MN_KEY], MN_SUPER
    jnz msc_down
    mov eax, [eax + MN_SIBLING]
    jmp msc_sib
msc_parent:
    mov ebx, [ebx + MN_PARENT]
    jmp msc_up
ms_reserve:                             ; ecx page tables, and 1024 nodes each
    mov dword ptr [ms_pts], 0
    mov esi, ecx
ms_res_pt:
    call pool_alloc
    test eax, eax
    jz ms_oom
    add eax, KOFF
    mov edx, [ms_pts]
    mov [eax], edx
    mov [ms_pts], eax
    dec esi
    jnz ms_res_pt
    cmp dword ptr [ms_top], 0
    je ms_no_node
    shl ecx, 10                         ; nodes needed
    xor edx, edx
    mov eax, [mdb_free]
ms_res_count:
    cmp edx, ecx
    jae ms_walk
    test eax, eax
    jz ms_res_grow
    inc edx
    mov eax, [eax + MN_HNEXT]
    jmp ms_res_count
ms_res_grow:
    call mdb_grow
    test eax, eax
    jz ms_oom
    xor eax, eax
    add edx, 128
    jmp ms_res_count
ms_no_node:                             ; a mapping the kernel made (no node): just the table
    call ms_table
    jmp ms_done
ms_walk:
    mov ebx, [ms_top]
ms_visit:
    mov [ms_x], ebx
    mov eax, [ebx + MN_SPACE]
    mov [ms_xspace], eax
    mov eax, [ebx + MN_KEY]
    and eax, SUPER_MASK
    mov [ms_xbase], eax
    call ms_table
    call ms_pieces
    mov ebx, [ms_x]
    mov eax, [ebx + MN_CHILD]           ; (only 4 MiB children are left)
    test eax, eax
    jnz ms_next
ms_up:
    cmp ebx, [ms_top]
    je ms_free
    mov eax, [ebx + MN_SIBLING]
    test eax, eax
    jnz ms_next
    mov ebx, [ebx + MN_PARENT]
    jmp ms_up
ms_next:
    mov ebx, eax
    jmp ms_visit
ms_free:                                ; the split nodes go (leaves first)
    mov eax, [ms_top]
    call mdb_detach
    mov ebx, eax
    mov edx, eax
msf_loop:
    mov eax, [edx + MN_CHILD]
    test eax, eax
    jz msf_leaf
    mov edx, eax
    jmp msf_loop
msf_leaf:
    cmp edx, ebx
    je msf_top
    mov eax, edx
    mov edx, [eax + MN_PARENT]
    mov ecx, [eax + MN_SIBLING]
    mov [edx + MN_CHILD], ecx
    call mdb_release
    jmp msf_loop
msf_top:
    mov eax, ebx
    call mdb_release
ms_done:
    call ms_unreserve
    mov eax, cr3                        ; the old 4 MiB entries may be cached
    mov cr3, eax
    popad
    clc
    ret
ms_oom:
    call ms_unreserve
    popad
    stc
    ret

; ms_unreserve: the page tables reserved and not used go back to the pool.
ms_unreserve:
    mov eax, [ms_pts]
    test eax, eax
    jz msu_out
    mov edx, [eax]
    mov [ms_pts], edx
    sub eax, KOFF
    call pool_free
    jmp ms_unreserve
msu_out:
    ret

; ms_table: the 4 MiB PDE of [ms_xspace] at [ms_xbase] becomes a reserved page table with the
; same frames and rights; [ms_frame] = its first frame.  Clobbers eax, ecx, edx, edi.
ms_table:
    mov edx, [ms_xspace]
    add edx, KOFF
    mov eax, [ms_xbase]
    shr eax, 22
    lea edx, [edx + eax*4]              ; &PDE
    mov eax, [edx]
    mov ecx, eax
    and ecx, SUPER_MASK
    mov [ms_frame], ecx
    test eax, PTE_P
    jz mst_out
    test eax, PTE_PS
    jz mst_out
    and eax, PTE_P | PTE_W | PTE_U
    or ecx, eax                         ; the first PTE
    mov edi, [ms_pts]
    mov eax, [edi]
    mov [ms_pts], eax
    mov eax, 1024
mst_fill:
    mov [edi], ecx
    add ecx, 0x1000
    add edi, 4
    dec eax
    jnz mst_fill
    sub edi, 4096
    sub edi, KOFF
    or edi, PTE_U | PTE_W | PTE_P
    mov [edx], edi
mst_out:
    ret

; ms_pieces: [ms_x] (a 4 MiB node, its PDE just split): 1024 nodes for its pieces, each under
; the parent's piece of the same offset (the parent is split already) or under the unsplit
; parent; its 4 KiB children move under the piece of their frame; it is marked MN_SPLIT.
; Clobbers all but ebp.
ms_pieces:
    mov ebx, [ms_x]
    xor esi, esi                        ; the piece's offset
msp_loop:
    mov ecx, [ebx + MN_PARENT]
    test ecx, ecx
    jz msp_have
    test dword ptr [ecx + MN_KEY], MN_SPLIT
    jz msp_have
    mov edx, [ecx + MN_SPACE]
    mov eax, [ecx + MN_KEY]
    and eax, SUPER_MASK
    add eax, esi
    call mdb_find
    mov ecx, eax
msp_have:
    mov eax, [mdb_free]                 ; (reserved)
    mov edx, [eax + MN_HNEXT]
    mov [mdb_free], edx
    mov edx, [ebx + MN_SPACE]
    mov [eax + MN_SPACE], edx
    mov edx, [ebx + MN_KEY]
    and edx, SUPER_MASK
    add edx, esi
    mov [eax + MN_KEY], edx
    mov [eax + MN_PARENT], ecx
    xor edx, edx
    mov [eax + MN_CHILD], edx
    mov [eax + MN_SIBLING], edx
    test ecx, ecx
    jz msp_hash
    mov edx, [ecx + MN_CHILD]
    mov [eax + MN_SIBLING], edx
    mov [ecx + MN_CHILD], eax
msp_hash:
    call mdb_hash_in
    add esi, 0x1000
    cmp esi, 0x400000
    jb msp_loop
    lea edi, [ebx + MN_CHILD]           ; the link to the child looked at
msp_child:
    mov eax, [edi]
    test eax, eax
    jz msp_mark
    test dword ptr [eax + MN_KEY], MN_SUPER
    jnz msp_keep
    mov edx, [eax + MN_SIBLING]         ; a 4 KiB child: out of the list ...
    mov [edi], edx
    mov ecx, eax
    mov edx, [ecx + MN_SPACE]
    mov eax, [ecx + MN_KEY]
    call mdb_entry_at
    xor esi, esi
    test eax, eax
    jz msp_offset
    mov esi, [eax]
    and esi, PAGE_MASK
    sub esi, [ms_frame]
    and esi, 0x3FF000
msp_offset:
    mov edx, [ebx + MN_SPACE]           ; ... under the piece of its frame
    mov eax, [ebx + MN_KEY]
    and eax, SUPER_MASK
    add eax, esi
    call mdb_find
    mov [ecx + MN_PARENT], eax
    mov edx, [eax + MN_CHILD]
    mov [ecx + MN_SIBLING], edx
    mov [eax + MN_CHILD], ecx
    jmp msp_child
msp_keep:
    lea edi, [eax + MN_SIBLING]
    jmp msp_child
msp_mark:
    or dword ptr [ebx + MN_KEY], MN_SPLIT
    ret

.section .data
.align 4
ms_top: .long 0                         ; mdb_split's state
ms_x: .long 0
ms_xspace: .long 0
ms_xbase: .long 0
ms_frame: .long 0
ms_pts: .long 0                         ; reserved page tables (kernel addresses, linked)
mdb_hash: .long 0                       ; kernel address of the hash table
mdb_free: .long 0                       ; free nodes, linked through MN_HNEXT

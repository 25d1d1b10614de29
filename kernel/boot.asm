; kernel/boot.asm: from the multiboot loader to the first user thread.
;
; The loader (DESIGN D2) enters `start` at its physical address with paging off, EAX =
; 0x2BADB002 and EBX = the multiboot information (MBI).  `start` builds the master page
; directory (the physical window at 0xC0000000, plus an identity map of the first 4 MiB only
; while it runs low), turns on paging with 4 MiB pages, and jumps to the higher half.
; `kernel_init` then sets up everything in order and starts the first thread.
;
; Boot tasks: module 1 is sigma0 (task 2), module 2 the root task (task 4).  The kernel loads
; each ELF's PT_LOAD segments into frames of its own pool (reserved, so sigma0 never hands
; them out) at their link addresses.  Sigma0's address space also maps all other RAM 1:1
; (4 MiB pages where no kernel memory is in the way): the pages it owns and hands out.  The
; root task's pager is sigma0.  Further modules are listed in the KIP for the root task.

.section .text
mb_header:                              ; first in the image: the loader searches 8 KiB
    .long 0x1BADB002                    ; multiboot magic
    .long 0x00000003                    ; page-aligned modules, memory information
    .long 0xE4524FFB                    ; checksum: -(magic + flags)

start:
    cli
    cld
    mov edi, boot_magic - KOFF          ; physical addresses until paging is on
    mov [edi], eax
    mov edi, boot_mbi - KOFF
    mov [edi], ebx
    mov edi, master_pd - KOFF
    mov ebx, edi
    xor eax, eax
    mov ecx, 1024
    rep stosd
    mov dword ptr [ebx], 0x83           ; 0-4 MiB identity (PS|W|P): the code running now
    lea edi, [ebx + 0xC00]              ; PDE 768: the physical window
    mov eax, 0x183                      ; PS|G|W|P
    mov ecx, WINDOW_PDES
boot_window:
    stosd
    add eax, 0x400000
    loop boot_window
    mov eax, cr4
    or eax, 0x90                        ; PSE | PGE
    mov cr4, eax
    mov cr3, ebx
    mov eax, cr0
    or eax, 0x80010006                  ; PG | WP (the kernel cannot write read-only pages),
    mov cr0, eax                        ; EM | MP: no FPU state to share (x87 raises #NM)
    mov eax, boot_high
    jmp eax
boot_high:
    mov esp, boot_stack_top
    mov dword ptr [master_pd], 0        ; the identity map is user space: drop it
    mov eax, cr3
    mov cr3, eax
    mov dword ptr [cur_space], eax
    jmp kernel_init

kernel_init:
    call desc_init
    call serial_init
    mov esi, msg_banner
    call kputs
    call mbi_scan
    call pool_init
    call space_init
    call desc_alias                     ; GDT and IDT to the CPU page's alias
    call kip_init
    call irq_init
    call sched_init
    call task_init
    call boot_tasks
    mov esi, msg_starting
    call kputs
    call sched_pick
    jmp resume_tcb                      ; the boot stack is never used again

; mbi_scan: RAM size, modules and where the kernel pool may start.  Clobbers all.
mbi_scan:
    mov ebx, [boot_mbi]
    add ebx, KOFF
    test dword ptr [ebx], 1             ; MBI flags bit 0: mem_lower/mem_upper
    jz mbi_no_memory
    mov eax, [ebx + 8]                  ; mem_upper: KiB above 1 MiB
    add eax, 1024
    shl eax, 10
    cmp eax, L4_PHYS_WINDOW
    jbe mbi_ram_ok
    mov eax, L4_PHYS_WINDOW
mbi_ram_ok:
    mov [ram_end], eax
    mov eax, __end - KOFF               ; everything the loader put down ends before the pool
    mov [kernel_end_phys], eax
    mov edx, [boot_mbi]
    add edx, 0x1000                     ; the MBI itself
    call max_eax_edx
    test dword ptr [ebx], 8             ; bit 3: modules
    jz mbi_mods_done
    mov ecx, [ebx + 20]                 ; mods_count
    mov esi, [ebx + 24]                 ; mods_addr (physical)
    mov [mods_count], ecx
    mov [mods_addr], esi
    mov edx, ecx
    shl edx, 4
    add edx, esi
    call max_eax_edx
    add esi, KOFF
    xor edi, edi                        ; module index
mbi_mod_loop:
    cmp edi, ecx
    jae mbi_mods_done
    mov edx, [esi + 4]                  ; module end
    call max_eax_edx
    add esi, 16
    inc edi
    jmp mbi_mod_loop
mbi_mods_done:
    test dword ptr [ebx], 0x40          ; bit 6: memory map
    jz mbi_mmap_done
    mov edx, [ebx + 48]
    add edx, [ebx + 44]
    call max_eax_edx
mbi_mmap_done:
    add eax, 0xFFF
    and eax, PAGE_MASK
    mov [pool_start], eax
    ret
mbi_no_memory:
    mov esi, msg_no_memory
    jmp panic

max_eax_edx:                            ; eax = max(eax, edx)
    cmp edx, eax
    jbe max_done
    mov eax, edx
max_done:
    ret

; boot_tasks: sigma0 and the root task from modules 1 and 2.
boot_tasks:
    cmp dword ptr [mods_count], 2
    jb boot_no_modules
    ; sigma0: task 2, an address space mapping all free RAM 1:1, no pager.
    mov eax, L4_SIGMA0_TASK
    call boot_space
    mov ebx, eax                        ; page directory
    call sigma0_identity_map
    mov esi, [mods_addr]
    add esi, KOFF
    mov eax, [esi]                      ; module 1 start
    mov edx, ebx
    call load_elf                       ; eax = entry, ecx/edx = image range
    mov edi, kip
    mov [edi + L4_KIP_SIGMA0_EIP], eax
    mov [edi + L4_KIP_SIGMA0_MEMORY], ecx
    mov [edi + L4_KIP_SIGMA0_MEMORY + 4], edx
    mov ecx, eax                        ; eip
    mov eax, L4_SIGMA0_TASK
    xor edx, edx                        ; no pager
    xor esi, esi
    call boot_thread
    ; root task: task 4, pager sigma0.
    mov eax, L4_ROOT_TASK
    call boot_space
    mov ebx, eax
    mov esi, [mods_addr]
    add esi, KOFF
    mov eax, [esi + 16]                 ; module 2 start
    mov edx, ebx
    call load_elf
    mov edi, kip
    mov [edi + L4_KIP_ROOT_EIP], eax
    mov [edi + L4_KIP_ROOT_MEMORY], ecx
    mov [edi + L4_KIP_ROOT_MEMORY + 4], edx
    mov ecx, eax
    mov eax, L4_ROOT_TASK
    mov edx, L4_SIGMA0_TASK << 17 | L4_BOOT_VERSION     ; pager: sigma0's thread 0
    xor esi, esi
    call boot_thread
    ret
boot_no_modules:
    mov esi, msg_no_modules
    jmp panic

; boot_space: eax = task number -> eax = its new page directory; the task becomes active
; with version 1, chief 0 (the kernel), mcp 255.
boot_space:
    push ebx
    mov ebx, eax
    call space_create
    test eax, eax
    jz boot_oom
    push eax
    call io_allow_all                   ; sigma0 and the root task own every I/O port
    pop eax
    shl ebx, TASK_ENTRY_SHIFT
    add ebx, tasks
    mov [ebx + TASK_PD], eax
    mov dword ptr [ebx + TASK_CHIEF], 0
    mov dword ptr [ebx + TASK_VERSION], L4_BOOT_VERSION
    mov dword ptr [ebx + TASK_MCP], 255
    mov dword ptr [ebx + TASK_NEST], 0
    pop ebx
    ret
boot_oom:
    mov esi, msg_boot_oom
    jmp panic

; boot_thread: eax = task, ecx = eip, edx:esi = pager -> lthread 0 of the task, ready.
boot_thread:
    push ebx
    push edi
    push ebp
    mov edi, esi
    mov esi, edx
    mov edx, ecx
    xor ecx, ecx                        ; esp: the program's crt0 sets its own
    xor ebx, ebx                        ; lthread 0
    mov ebp, L4_DEFAULT_PRIO
    call thread_create                  ; eax = TCB or 0
    test eax, eax
    jz boot_oom
    pop ebp
    pop edi
    pop ebx
    ret

; sigma0_identity_map: ebx = page directory.  Every page of [0, ram_end) that is not kernel
; memory (image, pool) is mapped 1:1, user, writable; whole 4 MiB pages where possible.
sigma0_identity_map:
    push ebx
    push esi
    push edi
    push ebp
    xor esi, esi                        ; physical address
s0id_super:
    cmp esi, [ram_end]
    jae s0id_done
    mov eax, esi
    add eax, 0x400000
    cmp eax, [ram_end]
    ja s0id_small                       ; a partial 4 MiB at the end of RAM
    mov eax, esi
    mov edx, 0x400000
    call overlaps_kernel
    jc s0id_small
    mov eax, esi
    or eax, PTE_PS | PTE_U | PTE_W | PTE_P
    mov edx, esi
    shr edx, 22
    mov ecx, ebx
    add ecx, KOFF
    mov [ecx + edx*4], eax
    add esi, 0x400000
    jmp s0id_super
s0id_small:
    mov ebp, esi
    add ebp, 0x400000                   ; end of this 4 MiB
s0id_page:
    cmp esi, ebp
    jae s0id_super
    cmp esi, [ram_end]
    jae s0id_done
    mov eax, esi
    mov edx, 0x1000
    call overlaps_kernel
    jc s0id_next
    mov edx, ebx                        ; pd
    mov eax, esi                        ; va
    mov ecx, esi
    or ecx, PTE_U | PTE_W | PTE_P
    call space_set_pte
    test eax, eax
    jz boot_oom
s0id_next:
    add esi, 0x1000
    jmp s0id_page
s0id_done:
    pop ebp
    pop edi
    pop esi
    pop ebx
    ret

; overlaps_kernel: [eax, eax + edx) meets the kernel image or pool -> CF set.  Clobbers ecx.
overlaps_kernel:
    mov ecx, eax
    add ecx, edx                        ; end
    cmp ecx, KERNEL_PHYS
    jbe ovk_pool
    cmp eax, [kernel_end_phys]
    jae ovk_pool
    stc
    ret
ovk_pool:
    cmp ecx, [pool_start]
    jbe ovk_no
    cmp eax, [pool_end]
    jae ovk_no
    stc
    ret
ovk_no:
    clc
    ret

; load_elf: eax = physical address of an ELF file, edx = page directory of the task.
; Copies every PT_LOAD segment into pool frames mapped (user, writable) at its addresses.
; Returns eax = entry, ecx = lowest and edx = highest (exclusive) address loaded.
load_elf:
    push ebx
    push esi
    push edi
    push ebp
    mov ebx, eax
    add ebx, KOFF                       ; ELF header
    mov [elf_pd], edx
    mov dword ptr [elf_low], 0xFFFFFFFF
    mov dword ptr [elf_high], 0
    cmp dword ptr [ebx], 0x464C457F     ; "\x7fELF"
    jne elf_bad
    cmp word ptr [ebx + 4], 0x0101      ; 32-bit, little-endian
    jne elf_bad
    cmp word ptr [ebx + 18], 3          ; EM_386
    jne elf_bad
    movzx ecx, word ptr [ebx + 44]      ; e_phnum
    mov esi, [ebx + 28]                 ; e_phoff
    add esi, ebx
elf_phdr:
    test ecx, ecx
    jz elf_done
    push ecx
    cmp dword ptr [esi], 1              ; PT_LOAD
    jne elf_next
    mov eax, [esi + 8]                  ; p_vaddr
    cmp eax, L4_USER_LIMIT
    jae elf_bad
    cmp eax, [elf_low]
    jae elf_low_ok
    mov [elf_low], eax
elf_low_ok:
    mov edx, eax
    add edx, [esi + 20]                 ; + p_memsz
    cmp edx, [elf_high]
    jbe elf_high_ok
    mov [elf_high], edx
elf_high_ok:
    and eax, PAGE_MASK
    mov edi, eax                        ; page being filled
elf_page:
    mov edx, [esi + 8]
    add edx, [esi + 20]
    cmp edi, edx
    jae elf_next
    mov edx, [elf_pd]
    mov eax, edi
    call space_lookup                   ; eax = physical frame or 0
    test eax, eax
    jnz elf_have_frame
    call pool_alloc
    test eax, eax
    jz boot_oom
    push eax
    mov ecx, eax
    or ecx, PTE_U | PTE_W | PTE_P
    mov edx, [elf_pd]
    mov eax, edi
    call space_set_pte
    test eax, eax
    jz boot_oom
    pop eax
elf_have_frame:
    ; copy file bytes [max(vaddr, page), min(vaddr + filesz, page + 4096)) into the frame
    mov ebp, eax                        ; frame (physical)
    mov eax, [esi + 8]                  ; vaddr
    cmp eax, edi
    jae elf_from_ok
    mov eax, edi
elf_from_ok:                            ; eax = first address to copy
    mov edx, [esi + 8]
    add edx, [esi + 16]                 ; vaddr + filesz
    lea ecx, [edi + 0x1000]
    cmp edx, ecx
    jbe elf_to_ok
    mov edx, ecx
elf_to_ok:                              ; edx = end of copy
    cmp eax, edx
    jae elf_page_done
    mov ecx, edx
    sub ecx, eax                        ; bytes
    push esi
    push edi
    mov edx, eax
    sub edx, [esi + 8]                  ; offset into the segment
    add edx, [esi + 4]                  ; + p_offset: offset into the file
    mov esi, ebx
    add esi, edx                        ; source (kernel virtual)
    sub eax, edi                        ; offset in the page
    lea edi, [ebp + eax]
    add edi, KOFF                       ; destination
    rep movsb
    pop edi
    pop esi
elf_page_done:
    add edi, 0x1000
    jmp elf_page
elf_next:
    pop ecx
    dec ecx
    movzx eax, word ptr [ebx + 42]      ; e_phentsize
    add esi, eax
    jmp elf_phdr
elf_done:
    mov eax, [ebx + 24]                 ; e_entry
    mov ecx, [elf_low]
    mov edx, [elf_high]
    pop ebp
    pop edi
    pop esi
    pop ebx
    ret
elf_bad:
    mov esi, msg_bad_elf
    jmp panic

.section .rodata
msg_banner:
    .asciz "L4/x86 V2 kernel (l4emu): booting\n"
msg_starting:
    .asciz "L4: starting sigma0 and the root task\n"
msg_no_memory:
    .asciz "no memory size in the multiboot information"
msg_no_modules:
    .asciz "need two boot modules: sigma0 and the root task"
msg_boot_oom:
    .asciz "out of kernel memory while booting"
msg_bad_elf:
    .asciz "a boot module is not an i386 ELF executable for user space"

.section .data
; The first data of the kernel (kernel.asm includes boot.asm first) starts a page: no word
; the kernel writes shares a page with code (a write there makes the engine check its blocks).
.align 4096
boot_magic: .long 0
boot_mbi: .long 0
ram_end: .long 0
kernel_end_phys: .long 0
mods_count: .long 0
mods_addr: .long 0
elf_pd: .long 0
elf_low: .long 0
elf_high: .long 0

.section .bss
.align 4096
master_pd:                              ; the kernel half is copied into every address space
    .space 4096
boot_stack:
    .space 4096
boot_stack_top:

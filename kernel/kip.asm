; kernel/kip.asm: the kernel info page (V2 l4_kernel_info_t, offsets in abi.toml).
;
; One page of the kernel image, mapped read-only at L4_KIP_ADDR in every address space
; (space.asm).  It says what the kernel is (magic 'L4' 0xE6 'K', version, version string),
; where memory is (main, kernel image = reserved0, kernel pool = reserved1, boot modules =
; semi-reserved, the first MiB = dedicated[0]), the time (clock in microseconds, advanced by
; every tick), and how to enter the kernel: L4_KIP_ENTRY_METHODS lists int 0x30-0x36 and the
; call gates; the sys_* fields are offsets of stubs in this page (`lcall gate, 0; ret`), as
; V2 kernels with KIP system calls provide them (kip_sys_calls = 1).  The l4emu extension
; fields after the V2 ones list the boot modules and the multiboot information for the root
; task.

.section .text
kip_init:
    push ebx
    push esi
    push edi
    mov edi, kip
    mov dword ptr [edi + L4_KIP_MAGIC], L4_KIP_MAGIC_VALUE
    mov dword ptr [edi + L4_KIP_VERSION], L4_KIP_VERSION_VALUE
    mov byte ptr [edi + L4_KIP_OFFSET_VERSION_STRINGS], 0x20      ; L4_KIP_VERSION_STRING / 16
    mov byte ptr [edi + L4_KIP_SYS_CALLS], 1
    ; memory descriptors: low, high (exclusive)
    mov dword ptr [edi + L4_KIP_MAIN_MEMORY], 0
    mov eax, [ram_end]
    mov [edi + L4_KIP_MAIN_MEMORY + 4], eax
    mov dword ptr [edi + L4_KIP_RESERVED0], KERNEL_PHYS
    mov eax, [kernel_end_phys]
    mov [edi + L4_KIP_RESERVED0 + 4], eax
    mov eax, [pool_start]
    mov [edi + L4_KIP_RESERVED1], eax
    mov eax, [pool_end]
    mov [edi + L4_KIP_RESERVED1 + 4], eax
    mov dword ptr [edi + L4_KIP_DEDICATED], 0
    mov dword ptr [edi + L4_KIP_DEDICATED + 4], 0x100000
    mov dword ptr [edi + L4_KIP_FREQUENCY_CPU], 1000000     ; nominal: 1 instruction per ns
    ; entry stubs and the sys_* offsets
    lea ebx, [edi + L4_KIP_STUBS]
    lea esi, [edi + L4_KIP_SYS_IPC]
    mov ecx, L4_GATE_IPC
    mov edx, L4_KIP_STUBS
kip_stub:
    mov dword ptr [ebx], 0x9A           ; lcall ptr16:32 with offset 0 ...
    mov eax, ecx
    shl eax, 8
    or eax, 0xC3000000                  ; ... selector, then ret
    mov [ebx + 4], eax
    mov [esi], edx
    add ebx, 8
    add esi, 4
    add edx, 8
    add ecx, L4_GATE_STRIDE
    cmp ecx, L4_GATE_TASK_NEW
    jbe kip_stub
    ; l4emu extensions
    mov dword ptr [edi + L4_KIP_ENTRY_METHODS], L4_KIP_ENTRY_INT | L4_KIP_ENTRY_GATE
    mov dword ptr [edi + L4_KIP_GATE_BASE], L4_GATE_IPC
    mov eax, [boot_mbi]
    mov [edi + L4_KIP_MBI], eax
    mov dword ptr [edi + L4_KIP_MAX_TASKS], L4_MAX_TASKS
    mov dword ptr [edi + L4_KIP_FAST_PATH], fastpath_ipc
    ; boot modules
    mov ecx, [mods_count]
    cmp ecx, L4_KIP_MAX_MODULES
    jbe kip_nmods
    mov ecx, L4_KIP_MAX_MODULES
kip_nmods:
    mov [edi + L4_KIP_NMODULES], ecx
    test ecx, ecx
    jz kip_version
    mov esi, [mods_addr]
    add esi, KOFF
    mov eax, [esi]                      ; semi-reserved: from the first module ...
    mov [edi + L4_KIP_SEMI_RESERVED], eax
    lea ebx, [edi + L4_KIP_MODULES]
kip_mod:
    mov eax, [esi]
    mov [ebx], eax
    mov eax, [esi + 4]
    mov [ebx + 4], eax
    mov [edi + L4_KIP_SEMI_RESERVED + 4], eax       ; ... to the last one's end
    mov eax, [esi + 8]
    mov [ebx + 8], eax
    add esi, 16
    add ebx, L4_KIP_MODULE_SIZE
    loop kip_mod
    mov eax, [edi + L4_KIP_SEMI_RESERVED + 4]
    add eax, 0xFFF
    and eax, PAGE_MASK
    mov [edi + L4_KIP_SEMI_RESERVED + 4], eax
kip_version:
    mov esi, kip_version_string
    lea ebx, [edi + L4_KIP_VERSION_STRING]
kip_copy:
    mov al, [esi]
    mov [ebx], al
    inc esi
    inc ebx
    test al, al
    jnz kip_copy
    pop edi
    pop esi
    pop ebx
    ret

.section .rodata
kip_version_string:
    .asciz "l4emu L4/x86 V2 kernel 0.1 (short IPC, fast path, int 0x30 and call gates)"

.section .bss
.align 4096
kip:
    .space 4096

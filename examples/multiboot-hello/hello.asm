; The smallest guest l4emu boots: a multiboot v1 kernel in Intel-syntax assembly.
;
; It greets over COM1, prints what the loader handed it (magic, command line, memory size,
; modules), checks the firmware tables a PC BIOS leaves behind (the MP floating pointer and
; the ACPI RSDP), and ends the run through the isa-debug-exit port with status 0.
;
; Built by `l4emu build images/hello.toml` (keystone through emu/asm.py, linked by
; emu/boot/elf.py); booted by `l4emu boot images/hello.toml`.

.section .text
; The multiboot header must be 4-byte aligned in the first 8 KiB: keep it first.
mb_header:
    .long 0x1BADB002                  ; multiboot magic
    .long 0x00000003                  ; page-align modules, memory information
    .long -(0x1BADB002 + 0x00000003)  ; checksum

start:
    mov esp, stack_top
    mov [mbi], ebx
    mov [magic], eax
    call serial_init

    mov esi, msg_hello
    call puts

    mov esi, msg_magic
    call puts
    mov eax, [magic]
    call puthex
    call newline

    mov ebx, [mbi]
    test dword ptr [ebx], 4           ; MBI flags bit 2: command line present
    jz no_cmdline
    mov esi, msg_cmdline
    call puts
    mov esi, [ebx + 16]
    call puts
    call newline
no_cmdline:
    mov esi, msg_mem
    call puts
    mov eax, [ebx + 8]                ; mem_upper in KiB
    shr eax, 10
    inc eax                           ; + the first MiB
    call putdec
    mov esi, msg_mib
    call puts

    mov esi, msg_mods
    call puts
    mov eax, [ebx + 20]               ; mods_count
    call putdec
    call newline

    ; The MP floating pointer lives in the EBDA, whose segment the BDA holds at 0x40E.
    movzx esi, word ptr [0x40E]
    shl esi, 4
    mov ecx, 64
find_mp:
    cmp dword ptr [esi], 0x5F504D5F   ; "_MP_"
    je found_mp
    add esi, 16
    loop find_mp
    mov esi, msg_no_mp
    call puts
    jmp acpi
found_mp:
    mov esi, msg_mp
    call puts
acpi:
    mov esi, 0xE0000
find_rsdp:
    cmp dword ptr [esi], 0x20445352   ; "RSD "
    jne next_rsdp
    cmp dword ptr [esi + 4], 0x20525450  ; "PTR "
    je found_rsdp
next_rsdp:
    add esi, 16
    cmp esi, 0x100000
    jb find_rsdp
    mov esi, msg_no_acpi
    call puts
    jmp done
found_rsdp:
    mov esi, msg_acpi
    call puts
done:
    mov esi, msg_bye
    call puts
    mov al, 0                         ; exit status (0 << 1) | 1
    out 0xF4, al
    cli
    hlt

.section .data
msg_hello:   .asciz "Hello from a multiboot kernel on l4emu.\n"
msg_magic:   .asciz "loader magic: "
msg_cmdline: .asciz "command line: "
msg_mem:     .asciz "memory: "
msg_mib:     .asciz " MiB\n"
msg_mods:    .asciz "modules: "
msg_mp:      .asciz "found the Intel MP floating pointer\n"
msg_no_mp:   .asciz "no MP floating pointer\n"
msg_acpi:    .asciz "found the ACPI RSDP\n"
msg_no_acpi: .asciz "no ACPI RSDP\n"
msg_bye:     .asciz "bye\n"
mbi:         .long 0
magic:       .long 0

.include "serial.inc"

.section .bss
    .space 4096
stack_top:

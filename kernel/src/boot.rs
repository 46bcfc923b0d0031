//! From QEMU's PVH entry to Rust: the ELF note that names the entry, and a
//! 32-bit stub that turns on long mode and calls `kernel_main`.
//!
//! PVH (the Xen/QEMU direct-boot protocol) was chosen over Multiboot
//! because QEMU's `-kernel` loads an ELF64 image with a PVH note directly
//! and fast (Multiboot1 rejects ELF64), and over a disk image because it
//! needs no bootloader. The stub runs with paging off in 32-bit protected
//! mode, `ebx` holding the physical address of the `hvm_start_info`.
//! It identity-maps the first 1 GiB with 2 MiB pages (enough for the
//! image, its stack and heap; the kernel builds its own tables later),
//! loads a 64-bit GDT, and jumps to 64-bit code.

use core::arch::global_asm;

/// Bytes of the boot stack.
pub const STACK_SIZE: usize = 256 * 1024;

global_asm!(
    r#"
    .section .note.pvh, "a", @note
    .p2align 2
    .long 4                 /* namesz: "Xen\0" */
    .long 8                 /* descsz: a 64-bit address */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .quad pvh_start

    .section .text.boot, "ax"
    .code32
    .global pvh_start
pvh_start:
    cli
    cld
    mov esi, ebx                    /* keep the start info */
    mov esp, offset boot_stack_top

    /* PML4[0] -> PDPT, PDPT[0] -> PD, PD[i] -> 2 MiB page i. */
    mov eax, offset boot_pdpt
    or eax, 3                       /* present, writable */
    mov dword ptr [boot_pml4], eax
    mov eax, offset boot_pd
    or eax, 3
    mov dword ptr [boot_pdpt], eax
    xor ecx, ecx
2:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83                    /* present, writable, 2 MiB page */
    mov dword ptr [boot_pd + ecx * 8], eax
    mov dword ptr [boot_pd + ecx * 8 + 4], 0
    inc ecx
    cmp ecx, 512
    jne 2b

    mov eax, offset boot_pml4
    mov cr3, eax
    mov eax, cr4
    or eax, 1 << 5                  /* PAE */
    mov cr4, eax
    mov ecx, 0xC0000080             /* EFER */
    rdmsr
    or eax, 1 << 8                  /* long mode enable */
    wrmsr
    mov eax, cr0
    or eax, 0x80000001              /* paging, protected mode */
    mov cr0, eax

    lgdt [boot_gdt_ptr]
    /* ljmp 0x08:long_mode, spelled out: opcode, offset32, selector. */
    .byte 0xEA
    .long long_mode
    .word 0x08

    .code64
long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, offset boot_stack_top
    mov edi, esi                    /* start info: first argument */
    call kernel_main
3:
    hlt
    jmp 3b

    .section .rodata
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF        /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF        /* 0x10: data */
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .bss
    .p2align 12
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096
    /* One page that the kernel's own page tables leave unmapped, so a
     * stack overflow faults instead of overwriting what lies below. */
    .p2align 12
    .global boot_stack_guard
boot_stack_guard:
    .skip 4096
boot_stack:
    .skip {stack}
boot_stack_top:
"#,
    stack = const STACK_SIZE,
);

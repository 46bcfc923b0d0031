//! Exceptions: an IDT whose 32 CPU exception vectors lead to one report.
//!
//! Each vector has a small entry stub (in `global_asm!`, since
//! `extern "x86-interrupt"` is not stable) that pushes a dummy error code
//! where the CPU pushes none, then the vector number, saves the
//! general-purpose registers and calls [`exception`] with a pointer to
//! them. Every exception is fatal: the report goes to the console and
//! QEMU exits with the failure status. Double faults and page faults run
//! on their own stacks (see `gdt.rs`), so a stack overflow is reported.
//!
//! Device interrupts: vector 32 is the timer (IRQ 0 of the remapped
//! 8259s, see `timer.rs`); its stub saves the registers the C ABI lets a
//! callee clobber, calls [`crate::timer::interrupt`], and returns with
//! `iretq`. Vectors 39 and 47 catch the PICs' spurious interrupts.

use core::arch::global_asm;

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::tables::{DescriptorTablePointer, lidt};

global_asm!(
    r#"
    .section .text
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
exc_stub_\n:
    .if \n == 8 || \n == 10 || \n == 11 || \n == 12 || \n == 13 || \n == 14 || \n == 17 || \n == 21 || \n == 29 || \n == 30
    .else
    push 0
    .endif
    push \n
    jmp exc_common
    .endr

exc_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    and rsp, -16
    call {report}
    ud2

irq_timer:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    /* 5 words of frame + 9 saved: rsp is 16-byte aligned for the call. */
    cld
    call {timer}
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq

    /* A spurious IRQ 7 of the first PIC: no EOI is owed. */
irq_spurious_master:
    iretq

    /* A spurious IRQ 15: the second PIC owes none, the first one does. */
irq_spurious_slave:
    push rax
    mov al, 0x20
    out 0x20, al
    pop rax
    iretq

    .section .rodata
    .p2align 3
    .global irq_stub_table
irq_stub_table:
    .quad irq_timer
    .quad irq_spurious_master
    .quad irq_spurious_slave

    .p2align 3
    .global exc_stub_table
exc_stub_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exc_stub_\n
    .endr
"#,
    report = sym exception,
    timer = sym crate::timer::interrupt,
);

unsafe extern "C" {
    /// The entry stubs' addresses, by vector (defined above).
    static exc_stub_table: [u64; 32];
    /// The device interrupt stubs: timer, spurious 7, spurious 15.
    static irq_stub_table: [u64; 3];
}

/// The vector of the timer interrupt (IRQ 0 after remapping).
pub const TIMER_VECTOR: usize = 32;

/// What an entry stub saved, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct Frame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// One 16-byte interrupt gate.
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        attributes: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    /// The same gate, switching to interrupt stack `ist` (1 to 7).
    fn on_stack(self, ist: u8) -> Gate {
        Gate { ist, ..self }
    }

    /// A present ring-0 interrupt gate to `addr` in the kernel code segment.
    fn to(addr: u64) -> Gate {
        Gate {
            offset_low: addr as u16,
            selector: crate::gdt::KERNEL_CODE,
            ist: 0,
            attributes: 0x8E,
            offset_mid: (addr >> 16) as u16,
            offset_high: (addr >> 32) as u32,
            reserved: 0,
        }
    }
}

/// The table: the exceptions now, device interrupts later.
#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

/// Build and load the IDT.
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut gates = [Gate::MISSING; 256];
        // SAFETY: the table is defined in the asm above, 32 addresses.
        let stubs = unsafe { &exc_stub_table };
        for (gate, &stub) in gates.iter_mut().zip(stubs.iter()) {
            *gate = Gate::to(stub);
        }
        gates[8] = gates[8].on_stack(crate::gdt::IST_DOUBLE_FAULT);
        gates[14] = gates[14].on_stack(crate::gdt::IST_PAGE_FAULT);
        // SAFETY: defined in the asm above, 3 addresses.
        let irqs = unsafe { &irq_stub_table };
        gates[TIMER_VECTOR] = Gate::to(irqs[0]);
        gates[TIMER_VECTOR + 7] = Gate::to(irqs[1]);
        gates[TIMER_VECTOR + 15] = Gate::to(irqs[2]);
        Idt(gates)
    });
    let ptr = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::from_ptr(idt),
    };
    // SAFETY: the table is 'static and every present gate points at a
    // stub above that never returns into a bad state.
    unsafe { lidt(&ptr) };
}

const NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "non-maskable interrupt",
    "breakpoint",
    "overflow",
    "bound range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved",
    "x87 floating-point error",
    "alignment check",
    "machine check",
    "SIMD floating-point error",
    "virtualization exception",
    "control protection exception",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection exception",
    "VMM communication exception",
    "security exception",
    "reserved",
];

/// Report an exception and stop: called by the entry stubs only.
extern "C" fn exception(f: &Frame) -> ! {
    crate::serial::seize();
    let name = NAMES.get(f.vector as usize).copied().unwrap_or("unknown");
    crate::println!(
        "EXCEPTION: {name} (vector {}) error {:#x} at rip {:#018x}",
        f.vector,
        f.error,
        f.rip
    );
    if f.vector == 14 {
        let cr2 = x86_64::registers::control::Cr2::read_raw();
        crate::println!("  faulting address (cr2) {cr2:#018x}");
        if crate::paging::is_stack_guard(cr2) {
            crate::println!("  kernel stack overflow: the fault is in the stack's guard page");
        }
    }
    crate::println!(
        "  rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}",
        f.rax,
        f.rbx,
        f.rcx,
        f.rdx
    );
    crate::println!(
        "  rsi {:#018x} rdi {:#018x} rbp {:#018x} rsp {:#018x}",
        f.rsi,
        f.rdi,
        f.rbp,
        f.rsp
    );
    crate::println!(
        "  r8  {:#018x} r9  {:#018x} r10 {:#018x} r11 {:#018x}",
        f.r8,
        f.r9,
        f.r10,
        f.r11
    );
    crate::println!(
        "  r12 {:#018x} r13 {:#018x} r14 {:#018x} r15 {:#018x}",
        f.r12,
        f.r13,
        f.r14,
        f.r15
    );
    crate::println!("  cs {:#x} ss {:#x} rflags {:#x}", f.cs, f.ss, f.rflags);
    crate::qemu::exit(crate::qemu::Exit::Failure)
}

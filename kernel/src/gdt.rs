//! The kernel's GDT, with a TSS whose interrupt stacks (IST) let the
//! double-fault and page-fault handlers run on known-good stacks: a stack
//! overflow faults on the guard page, and the report must not need the
//! stack that just ran out.

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot (1-based, as IDT gates count) of the double-fault stack.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot of the page-fault stack.
pub const IST_PAGE_FAULT: u8 = 2;
/// Bytes of each interrupt stack.
const IST_SIZE: usize = 32 * 1024;

#[repr(C, align(16))]
struct Stack([u8; IST_SIZE]);

/// The interrupt stacks; only the CPU writes them, through RSP.
static mut IST_STACKS: [Stack; 2] = [const { Stack([0; IST_SIZE]) }; 2];

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(
    GlobalDescriptorTable,
    SegmentSelector,
    SegmentSelector,
    SegmentSelector,
)> = Once::new();

/// The kernel code selector, which the IDT's gates name.
pub const KERNEL_CODE: u16 = 0x08;

/// Load the GDT and TSS and reload the segment registers.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let stacks = core::ptr::addr_of!(IST_STACKS) as u64;
        for i in 0..2 {
            // Stacks grow down: each slot holds the top of its stack.
            let top = stacks + ((i + 1) * IST_SIZE) as u64;
            tss.interrupt_stack_table[i] = VirtAddr::new(top);
        }
        tss
    });
    let (gdt, code, data, tss_sel) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_sel = gdt.append(Descriptor::tss_segment(tss));
        (gdt, code, data, tss_sel)
    });
    assert_eq!(code.0, KERNEL_CODE, "the IDT's gates name selector 0x08");
    gdt.load();
    // SAFETY: the selectors were just made in the loaded GDT: a 64-bit
    // code segment, a data segment and an available TSS that lives for
    // good (in a `Once`).
    unsafe {
        CS::set_reg(*code);
        DS::set_reg(*data);
        ES::set_reg(*data);
        SS::set_reg(*data);
        load_tss(*tss_sel);
    }
}

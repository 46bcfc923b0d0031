//! The kernel's own page tables, replacing the boot stub's 1 GiB map.
//!
//! Everything stays identity-mapped (virtual = physical), which keeps DMA
//! simple: a buffer's address is what the device is told. The low 4 GiB
//! are mapped with 2 MiB pages; a page that overlaps no RAM region of the
//! loader's map is device memory (PCI BARs, the ECAM window, the local
//! APIC, firmware) and is mapped uncached. Two 2 MiB pages are split into
//! 4 KiB pages so that single pages can be left out: page 0 (a null
//! pointer faults) and the guard page below the boot stack (an overflow
//! faults instead of silently overwriting memory). Device memory above
//! 4 GiB (64-bit BARs) is mapped on demand by [`map_mmio`].

use spin::Mutex;
use x86_64::PhysAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::{PageTable, PageTableFlags as Flags, PhysFrame};

const PAGE_2M: u64 = 2 << 20;
const GIB: u64 = 1 << 30;
/// Gigabytes mapped at boot.
const LOW_GIB: usize = 4;
/// Page directories for device memory above 4 GiB, each covering 1 GiB.
const HIGH_PDS: usize = 8;

unsafe extern "C" {
    /// The unmapped page below the boot stack (boot.rs).
    static boot_stack_guard: u8;
}

/// Every table, in one place; their addresses are their physical
/// addresses, since the image is identity-mapped.
struct Tables {
    pml4: PageTable,
    pdpt: PageTable,
    low: [PageTable; LOW_GIB],
    high: [PageTable; HIGH_PDS],
    high_used: usize,
    /// 4 KiB pages of the first 2 MiB (page 0 left out).
    first: PageTable,
    /// 4 KiB pages of the 2 MiB around the stack guard (guard left out).
    guard: PageTable,
}

static TABLES: Mutex<Tables> = Mutex::new(Tables {
    pml4: PageTable::new(),
    pdpt: PageTable::new(),
    low: [const { PageTable::new() }; LOW_GIB],
    high: [const { PageTable::new() }; HIGH_PDS],
    high_used: 0,
    first: PageTable::new(),
    guard: PageTable::new(),
});

/// What [`init`] mapped, for the boot proof.
pub struct Summary {
    /// 2 MiB pages mapped.
    pub pages_2m: usize,
    /// Of those, uncached (device memory).
    pub uncached: usize,
    /// 4 KiB pages mapped (the two split 2 MiB pages, less their holes).
    pub pages_4k: usize,
}

fn phys<T>(table: &T) -> PhysAddr {
    PhysAddr::new(table as *const T as u64)
}

const RW: Flags = Flags::PRESENT.union(Flags::WRITABLE);
const DEVICE: Flags = Flags::NO_CACHE.union(Flags::WRITE_THROUGH);

/// Build the tables and switch CR3 to them. `ram` is the loader's usable
/// RAM regions (start, bytes).
pub fn init(ram: &[(u64, u64)]) -> Summary {
    let guard = core::ptr::addr_of!(boot_stack_guard) as u64;
    let mut t = TABLES.lock();
    let t = &mut *t;
    let mut s = Summary {
        pages_2m: 0,
        uncached: 0,
        pages_4k: 0,
    };
    for gib in 0..LOW_GIB {
        let pd = &mut t.low[gib];
        for i in 0..512 {
            let addr = gib as u64 * GIB + i as u64 * PAGE_2M;
            let is_ram = ram
                .iter()
                .any(|&(start, len)| start < addr + PAGE_2M && addr < start + len);
            let extra = if is_ram { Flags::empty() } else { DEVICE };
            let holes = [0, guard];
            if holes.iter().any(|&h| h & !(PAGE_2M - 1) == addr) {
                // Split into 4 KiB pages, leaving the holes out. The null
                // page and the guard may share a 2 MiB page (the image
                // sits at 1 MiB), hence the two tables.
                let pt = if addr == 0 {
                    &mut t.first
                } else {
                    &mut t.guard
                };
                for (j, e) in pt.iter_mut().enumerate() {
                    let page = addr + j as u64 * 4096;
                    if !holes.contains(&page) {
                        e.set_addr(PhysAddr::new(page), RW | extra);
                        s.pages_4k += 1;
                    }
                }
                pd[i].set_addr(phys(pt), RW);
                continue;
            }
            pd[i].set_addr(PhysAddr::new(addr), RW | Flags::HUGE_PAGE | extra);
            s.pages_2m += 1;
            if !is_ram {
                s.uncached += 1;
            }
        }
        t.pdpt[gib].set_addr(phys(&t.low[gib]), RW);
    }
    t.pml4[0].set_addr(phys(&t.pdpt), RW);
    let frame = PhysFrame::from_start_address(phys(&t.pml4)).expect("PML4 is page-aligned");
    // SAFETY: the new tables identity-map all RAM (the image, its stack,
    // the loader's structures) exactly as the boot tables did, so every
    // address in use stays valid; they live in a static for good.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    s
}

/// Why device memory could not be mapped.
#[derive(Debug)]
pub struct OutOfTables;

/// Make `len` bytes of device memory at physical `start` reachable,
/// identity-mapped and uncached. Memory below 4 GiB already is.
pub fn map_mmio(start: u64, len: u64) -> Result<(), OutOfTables> {
    let end = start + len;
    if end <= LOW_GIB as u64 * GIB {
        return Ok(());
    }
    // The PDPT under PML4[0] reaches 512 GiB.
    if end > 512 * GIB {
        return Err(OutOfTables);
    }
    let mut t = TABLES.lock();
    let t = &mut *t;
    let mut addr = start & !(PAGE_2M - 1);
    while addr < end {
        let gib = (addr / GIB) as usize;
        if t.pdpt[gib].is_unused() {
            let n = t.high_used;
            if n == HIGH_PDS {
                return Err(OutOfTables);
            }
            t.high_used += 1;
            t.pdpt[gib].set_addr(phys(&t.high[n]), RW);
        }
        let pd_addr = t.pdpt[gib].addr().as_u64();
        let n = t
            .high
            .iter()
            .position(|pd| phys(pd).as_u64() == pd_addr)
            .ok_or(OutOfTables)?;
        let i = ((addr % GIB) / PAGE_2M) as usize;
        t.high[n][i].set_addr(PhysAddr::new(addr), RW | Flags::HUGE_PAGE | DEVICE);
        addr += PAGE_2M;
    }
    x86_64::instructions::tlb::flush_all();
    Ok(())
}

/// Whether `addr` lies in the stack's guard page (a fault there is a
/// stack overflow).
pub fn is_stack_guard(addr: u64) -> bool {
    let guard = core::ptr::addr_of!(boot_stack_guard) as u64;
    (guard..guard + 4096).contains(&addr)
}

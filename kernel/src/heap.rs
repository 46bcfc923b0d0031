//! The kernel heap: a linked-list allocator over a region of the image's
//! own .bss, so it needs no page-table work yet. (Growing it from the
//! loader's memory map comes with the kernel's own page tables.)

use linked_list_allocator::LockedHeap;

/// Bytes of heap.
pub const SIZE: usize = 8 << 20;

#[repr(C, align(4096))]
struct Arena([u8; SIZE]);

static mut ARENA: Arena = Arena([0; SIZE]);

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Hand the arena to the allocator; call once, before anything allocates.
pub fn init() {
    // SAFETY: called once at boot on one CPU, so this is the only
    // reference ever made to ARENA, and it is handed to the allocator,
    // which owns it from then on.
    unsafe {
        let start = core::ptr::addr_of_mut!(ARENA) as *mut u8;
        ALLOCATOR.lock().init(start, SIZE);
    }
}

/// Bytes in use and free.
pub fn usage() -> (usize, usize) {
    let h = ALLOCATOR.lock();
    (h.used(), h.free())
}

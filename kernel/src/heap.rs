//! The kernel heap: a linked-list allocator over the largest stretch of
//! RAM the loader's memory map offers above the kernel image (and above
//! the loader's own structures, which are still read). On QEMU with
//! 128 MiB that is most of the RAM, enough for 1 MiB 9P messages on
//! several connections; virtio's DMA buffers come from here too.

use linked_list_allocator::LockedHeap;

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

unsafe extern "C" {
    /// The first byte after the image and its .bss (kernel.ld).
    static __kernel_end: u8;
}

/// Where the heap went: (physical start, bytes).
pub fn region(ram: impl Iterator<Item = (u64, u64)>, loader_end: u64) -> Option<(u64, u64)> {
    let floor = (core::ptr::addr_of!(__kernel_end) as u64).max(loader_end);
    let floor = (floor + 4095) & !4095;
    // Only the low 4 GiB are mapped at boot (see `paging.rs`).
    const MAPPED: u64 = 4 << 30;
    ram.filter_map(|(start, len)| {
        let end = (start + len).min(MAPPED) & !4095;
        let start = start.max(floor);
        (end > start).then_some((start, end - start))
    })
    .max_by_key(|&(_, len)| len)
}

/// Hand `bytes` of RAM at `start` to the allocator; call once, before
/// anything allocates.
///
/// # Safety
/// The range must be RAM, mapped, and used by nothing else, for good.
pub unsafe fn init(start: u64, bytes: u64) {
    // SAFETY: the caller gives the range away; the allocator owns it.
    unsafe { ALLOCATOR.lock().init(start as *mut u8, bytes as usize) };
}

/// Bytes in use and free.
pub fn usage() -> (usize, usize) {
    let h = ALLOCATOR.lock();
    (h.used(), h.free())
}

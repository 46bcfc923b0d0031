//! What `virtio-drivers` needs from the kernel: DMA memory and device
//! memory. Everything is identity-mapped (see `paging.rs`), so a
//! buffer's physical address is its address, and shared buffers need no
//! bounce copies.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::ptr::NonNull;

use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

/// The kernel's `Hal`.
pub struct KernelHal;

fn layout(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("a page-aligned layout")
}

// SAFETY: allocations are zeroed, page-aligned and identity-mapped, so
// the physical address handed to the device is the memory the driver
// reads; they stay allocated until `dma_dealloc`.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // SAFETY: the layout has a non-zero size (pages >= 1).
        let p = unsafe { alloc_zeroed(layout(pages.max(1))) };
        match NonNull::new(p) {
            Some(p) => (p.as_ptr() as PhysAddr, p),
            // virtio-drivers reads a zero address as failure.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: the driver returns what `dma_alloc` gave, with its size.
        unsafe { dealloc(vaddr.as_ptr(), layout(pages.max(1))) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        if let Err(e) = crate::paging::map_mmio(paddr as u64, size as u64) {
            panic!("cannot map device memory at {paddr:#x}+{size:#x}: {e:?}");
        }
        NonNull::new(paddr as *mut u8).expect("device memory is not at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

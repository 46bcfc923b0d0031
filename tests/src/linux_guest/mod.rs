//! A stock Debian Linux kernel booted under QEMU (TCG) from a busybox
//! initramfs, to run Linux's own 9P client (v9fs) against a node.
//!
//! The parts come from Debian's packages (`fetch`), are packed with the
//! 9P and virtio-net modules into a newc initramfs (`initramfs`), and
//! booted with a test's init script (`qemu`); `v9fs` is the shell-tool
//! conformance script and the reading of its results.

pub mod fetch;
pub mod initramfs;
pub mod newc;
pub mod qemu;
pub mod v9fs;

pub use fetch::{Parts, parts};
pub use initramfs::{base_archive, with_init};
pub use qemu::{GuestRun, boot_guest};
pub use v9fs::{DIALECTS, Step, script, steps};

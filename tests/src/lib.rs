//! Harness for Cell0's integration tests: start real nodes (the `cell0`
//! binary), mount them with FUSE, talk raw 9P to them, run shell tools.
//!
//! Every helper fails loudly with what to do when a tool is missing; no test
//! skips.

pub mod booted;
pub mod conformance;
pub mod fake_qemu;
pub mod kernel;
pub mod node;
pub mod raw;
pub mod shell;

pub use booted::{Booted, processes_mentioning};
pub use fake_qemu::FakeQemu;
pub use kernel::{QEMU_FAILURE, QEMU_SUCCESS, ServingKernel, boot, kernel_image, markers};
pub use node::{Mount, Node, cell0_bin, free_port, is_mounted};
pub use raw::Raw;
pub use shell::{output_within, require_tool, sh, sh_ok};

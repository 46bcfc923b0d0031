//! Harness for Cell0's integration tests (this crate's and the `cell0`
//! tool's): start real nodes (the `cell0` binary), clusters of them and
//! diod, mount them with FUSE, talk raw 9P to them, run shell tools.
//!
//! Every helper fails loudly with what to do when a tool is missing; no test
//! skips.

pub mod booted;
pub mod cluster;
pub mod conformance;
pub mod fake_qemu;
pub mod kernel;
pub mod linux_guest;
pub mod mount;
pub mod nemesis;
pub mod node;
pub mod ports;
pub mod procs;
pub mod raw;
pub mod shell;

pub use booted::{Booted, processes_mentioning};
pub use fake_qemu::FakeQemu;
pub use kernel::{QEMU_FAILURE, QEMU_SUCCESS, ServingKernel, boot, kernel_image, markers};
pub use mount::{Mount, is_mounted};
pub use node::{CLIENT_LIMIT, Diod, Node, Served, cell0_bin, run_cell0};
pub use ports::{free_addr, free_port, free_port_run};
pub use procs::{children_of, default_signals, kill, pids, proc_state, rss_kib, wait_for};
pub use raw::Raw;
pub use shell::{output_within, require_tool, sh, sh_ok};

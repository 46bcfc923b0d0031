//! The bare-metal kernel, built once per test run and booted under QEMU.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The kernel image (an ELF64 with a PVH note), built for
/// `x86_64-unknown-none` so a test never boots a stale one.
pub fn kernel_image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let target = crate::node::cargo_build(
                &[
                    "--release",
                    "-p",
                    "cell0-kernel",
                    "--target",
                    "x86_64-unknown-none",
                ],
                "building the kernel failed (is the target installed? rustup target add x86_64-unknown-none)",
            );
            let image = target.join("x86_64-unknown-none/release/cell0-kernel");
            assert!(image.exists(), "{} missing after build", image.display());
            image
        })
        .clone()
}

/// QEMU's status when the kernel exits through isa-debug-exit after a
/// clean boot (`cell0.exit`).
pub const QEMU_SUCCESS: i32 = 33;
/// QEMU's status when the kernel stops on a panic or an exception.
pub const QEMU_FAILURE: i32 = 35;

/// Boot the kernel under QEMU (TCG, no display, console on stdout, a
/// virtio-net card on user networking) with
/// `append` as its command line, and wait at most `secs` for it to stop.
pub fn boot(append: &str, secs: u64) -> Output {
    crate::require_tool(
        "qemu-system-x86_64",
        "apt-get install --no-install-recommends qemu-system-x86",
    );
    crate::output_within(
        secs,
        Command::new("qemu-system-x86_64")
            .args(["-machine", "q35", "-accel", "tcg", "-m", "128M"])
            .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .args(["-nic", "user,model=virtio-net-pci"])
            .arg("-kernel")
            .arg(kernel_image())
            .args(["-append", append]),
    )
}

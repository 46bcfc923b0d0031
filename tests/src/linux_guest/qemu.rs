//! Booting the Debian kernel under QEMU (TCG) with an initramfs, its
//! console on the serial port, a virtio-net card on user networking (the
//! host's loopback is 10.0.2.2 from the guest).

use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use super::fetch::Parts;

/// One finished boot.
pub struct GuestRun {
    /// Everything the guest printed on its console (without `\r`).
    pub console: String,
    /// QEMU's exit status (success when the guest powered off).
    pub status: ExitStatus,
    /// How long from starting QEMU until it exited.
    pub took: Duration,
}

/// Boot `parts`' kernel with `initrd` and wait at most `secs` for the
/// guest to power off (QEMU is killed then, and the console so far is
/// returned). A kernel panic stops QEMU at once (`panic=-1`,
/// `-no-reboot`).
pub fn boot_guest(parts: &Parts, initrd: &Path, secs: u64) -> GuestRun {
    crate::require_tool(
        "qemu-system-x86_64",
        "apt-get install --no-install-recommends qemu-system-x86",
    );
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-machine", "q35", "-accel", "tcg", "-m", "512M", "-smp", "1",
    ])
    .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
    .args(["-no-reboot", "-nic", "user,model=virtio-net-pci"])
    .arg("-kernel")
    .arg(&parts.vmlinuz)
    .arg("-initrd")
    .arg(initrd)
    .args(["-append", "console=ttyS0 quiet loglevel=3 panic=-1"]);
    let started = Instant::now();
    let out = crate::output_within(secs, &mut cmd);
    GuestRun {
        console: String::from_utf8_lossy(&out.stdout).replace('\r', ""),
        status: out.status,
        took: started.elapsed(),
    }
}

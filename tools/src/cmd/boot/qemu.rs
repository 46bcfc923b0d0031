//! The QEMU command line that boots the kernel and forwards its 9P port.

use std::net::SocketAddrV4;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::bail;

/// The QEMU that runs the kernel.
pub const QEMU: &str = "qemu-system-x86_64";

/// The TCP port the kernel serves 9P on, inside the guest.
pub const GUEST_PORT: u16 = 564;

/// Fail, saying how to install it, unless QEMU is on `$PATH`.
pub fn check_installed() -> anyhow::Result<()> {
    if !crate::config::on_path(QEMU) {
        bail!(
            "{QEMU} is not installed, and it runs the kernel: apt-get install --no-install-recommends qemu-system-x86"
        );
    }
    Ok(())
}

/// `qemu-system-x86_64` booting `image` with `mem` of memory under TCG,
/// its console (COM1) on standard output, a virtio-net card on user
/// networking with `listen` forwarded to the guest's port 564.
pub fn command(image: &Path, mem: &str, listen: SocketAddrV4) -> Command {
    let mut cmd = Command::new(QEMU);
    cmd.args(["-machine", "q35", "-accel", "tcg", "-m", mem])
        .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-nic")
        .arg(format!(
            "user,model=virtio-net-pci,hostfwd=tcp:{}:{}-:{GUEST_PORT}",
            listen.ip(),
            listen.port()
        ))
        .arg("-kernel")
        .arg(image)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_forwarded_to_564() {
        let cmd = command(Path::new("/k"), "128M", "127.0.0.1:5641".parse().unwrap());
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.contains(&"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:5641-:564".to_string()),
            "{args:?}"
        );
        assert_eq!(args.last().map(String::as_str), Some("/k"));
        assert!(args.windows(2).any(|w| w == ["-accel", "tcg"]));
    }
}

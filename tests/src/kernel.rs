//! The bare-metal kernel, built once per test run and booted under QEMU.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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

/// The QEMU command that boots the kernel: TCG, no display, console on
/// stdout, a virtio-net card on user networking with `nic_extra` appended
/// to its options (such as `,hostfwd=tcp:127.0.0.1:PORT-:564`), and
/// `append` as the kernel's command line.
pub fn qemu(append: &str, nic_extra: &str) -> Command {
    crate::require_tool(
        "qemu-system-x86_64",
        "apt-get install --no-install-recommends qemu-system-x86",
    );
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-machine", "q35", "-accel", "tcg", "-m", "128M"])
        .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(["-nic", &format!("user,model=virtio-net-pci{nic_extra}")])
        .arg("-kernel")
        .arg(kernel_image())
        .args(["-append", append]);
    cmd
}

/// Boot the kernel under QEMU (see [`qemu`]) with `append` as its command
/// line, and wait at most `secs` for it to stop.
pub fn boot(append: &str, secs: u64) -> Output {
    crate::output_within(secs, &mut qemu(append, ""))
}

/// The `#E` marker lines of a console log, without line breaks.
pub fn markers(console: &str) -> Vec<String> {
    console
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.starts_with("#E"))
        .map(String::from)
        .collect()
}

/// A kernel serving 9P under QEMU, its port 564 forwarded to a loopback
/// port; QEMU is killed when this is dropped.
pub struct ServingKernel {
    child: Child,
    console: Arc<Mutex<String>>,
    /// Where the forwarded 9P port listens (`127.0.0.1:PORT`).
    pub addr: String,
    /// How long from starting QEMU until `#E10` was on the console.
    pub boot_time: Duration,
}

impl ServingKernel {
    /// Boot and wait (at most `secs`) for the `#E10` marker.
    pub fn start(secs: u64) -> ServingKernel {
        let port = crate::free_port();
        let started = Instant::now();
        let mut child = qemu("", &format!(",hostfwd=tcp:127.0.0.1:{port}-:564"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start qemu-system-x86_64");
        let console = Arc::new(Mutex::new(String::new()));
        let mut out = child.stdout.take().expect("piped stdout");
        let sink = console.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
                sink.lock().unwrap().push_str(&text);
            }
        });
        let mut k = ServingKernel {
            child,
            console,
            addr: format!("127.0.0.1:{port}"),
            boot_time: Duration::ZERO,
        };
        let deadline = started + Duration::from_secs(secs);
        loop {
            if k.console().lines().any(|l| l.starts_with("#E10 ")) {
                k.boot_time = started.elapsed();
                return k;
            }
            if let Ok(Some(status)) = k.child.try_wait() {
                panic!("QEMU exited with {status} before #E10:\n{}", k.console());
            }
            assert!(
                Instant::now() < deadline,
                "no #E10 within {secs} s:\n{}",
                k.console()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything on the console so far.
    pub fn console(&self) -> String {
        self.console.lock().unwrap().clone()
    }

    /// Whether QEMU is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServingKernel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

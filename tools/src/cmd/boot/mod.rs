//! `cell0 boot`: the bare-metal kernel under QEMU, serving the tree over
//! 9P on a loopback port, optionally mounted, until Ctrl-C.
//!
//! QEMU runs in a process group of its own (the terminal's Ctrl-C reaches
//! only this process, which then unmounts before it stops QEMU) and is
//! killed by the kernel if this process dies first, so no QEMU is left
//! behind. The console (COM1, QEMU's standard output) is copied to a file;
//! the kernel serves once it prints its `#E10` marker, and the markers it
//! printed before are checked as a boot proof. See cell0(1), kernel(8).

mod console;
mod image;
mod qemu;

use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cellfs::proof::boot;
use ninep::Dialect;

use crate::client::Client;
use crate::cmd::child::{Running, Signals, WAIT, describe, own_group_dies_with_us, wait_until};
use crate::cmd::up::{Stopped, wait_for_signal_or_exit};
use crate::mount::{check_fuse, is_mounted};
use console::Lines;

/// Where `cell0 boot` forwards the kernel's 9P port unless told otherwise.
pub const DEFAULT_BOOT_ADDR: &str = "127.0.0.1:5641";

/// Flags of `cell0 boot`.
#[derive(clap::Args, Debug)]
pub struct BootArgs {
    /// Host address forwarded to the kernel's 9P port (564).
    #[arg(long, default_value = DEFAULT_BOOT_ADDR)]
    pub listen: String,
    /// Also mount the kernel's tree on DIR (created if missing).
    #[arg(long, value_name = "DIR")]
    pub mount: Option<PathBuf>,
    /// The kernel image [default: $CELL0_KERNEL, else build it with cargo].
    #[arg(long, value_name = "IMAGE")]
    pub kernel: Option<PathBuf>,
    /// The guest's memory, in QEMU's syntax.
    #[arg(long, default_value = "128M")]
    pub mem: String,
    /// Where to copy the console [default: $XDG_RUNTIME_DIR/cell0/cell0-boot-PORT.log].
    #[arg(long, value_name = "FILE")]
    pub console: Option<PathBuf>,
    /// Seconds to wait for the kernel to serve (its #E10 marker).
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// How many console lines an error message shows.
const TAIL: usize = 15;

/// Boot, serve (and mount) until Ctrl-C or SIGTERM, then unmount and stop.
pub fn run(args: BootArgs) -> anyhow::Result<()> {
    let listen: SocketAddrV4 = args.listen.parse().map_err(|_| {
        anyhow::anyhow!(
            "--listen {}: expected an IPv4 address and port, such as {DEFAULT_BOOT_ADDR}",
            args.listen
        )
    })?;
    anyhow::ensure!(args.timeout > 0, "--timeout must be at least 1 second");
    qemu::check_installed()?;
    let mount_dir = match &args.mount {
        Some(dir) => Some(mount_point(dir)?),
        None => None,
    };
    check_free(listen)?;
    let image = image::find(args.kernel.as_deref())?;
    let console_path = args
        .console
        .clone()
        .unwrap_or_else(|| console::default_path(listen.port()));
    // The console carries the owner token: the owner's eyes only.
    let file = {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&console_path)
            .with_context(|| format!("creating the console file {}", console_path.display()))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f
    };
    let mut signals = Signals::catch()?;

    let mut cmd = qemu::command(&image, &args.mem, listen);
    // QEMU's own complaints (a port it cannot forward, a bad image) land
    // in the console file too, where the error messages below show them.
    cmd.stderr(file.try_clone()?);
    own_group_dies_with_us(&mut cmd);
    let mut child = cmd.spawn().context("starting QEMU")?;
    let stdout = child.stdout.take().context("QEMU's standard output")?;
    let mut kernel = Running {
        what: "kernel (QEMU)",
        child,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    console::copy(stdout, file, tx);
    let mut lines = Lines::new(rx);
    eprintln!(
        "cell0: booting {} under QEMU (console: {})",
        image.display(),
        console_path.display()
    );

    let timeout = Duration::from_secs(args.timeout);
    if !wait_for_serving(
        &mut kernel,
        &mut lines,
        &mut signals,
        timeout,
        &console_path,
    )? {
        kernel.kill();
        eprintln!("cell0: interrupted while booting; stopped QEMU");
        return Ok(());
    }
    let token = owner_token(&mut lines, &console_path)?;
    wait_for_9p(&mut kernel, &args.listen, &console_path, token.as_ref())?;
    println!(
        "kernel serving 9P on {listen} (console: {})",
        console_path.display()
    );
    match boot::verify(&lines.text) {
        Ok(v) => println!(
            "boot proof: #E0..#E10 verified, head {}",
            boot::hex(&v.head)
        ),
        Err(e) => {
            // A kernel whose own markers do not verify is not the image it
            // claims to be (or is broken): do not hand it out to clients.
            kernel.kill();
            anyhow::bail!(
                "the kernel's boot markers are not a valid boot proof: {e}; stopped QEMU (console: {})",
                console_path.display()
            );
        }
    }
    // From here on the console only goes to its file.
    drop(lines);

    let mut mount = match &mount_dir {
        Some(dir) => Some(start_mount(&args.listen, dir, token.as_ref())?),
        None => None,
    };
    if let Some(dir) = &mount_dir {
        println!("mounted on {}", dir.display());
    }
    eprintln!(
        "cell0: press Ctrl-C to {}stop the kernel",
        if mount.is_some() { "unmount and " } else { "" }
    );

    let why = {
        let mut children: Vec<&mut Running> = vec![&mut kernel];
        if let Some(m) = mount.as_mut() {
            children.push(m);
        }
        wait_for_signal_or_exit(&mut signals, &mut children)
    };
    let mount_status = mount.as_mut().map(Running::stop);
    if let Some(dir) = &mount_dir
        && is_mounted(dir)
    {
        // The mount process died without unmounting; do it for it.
        if let Err(e) = crate::mount::umount(dir) {
            eprintln!("cell0: {e:#}");
        }
    }
    let kernel_status = kernel.kill();
    match why {
        Stopped::Signal => {
            eprintln!(
                "cell0: {}stopped the kernel",
                if mount_dir.is_some() {
                    "unmounted and "
                } else {
                    ""
                }
            );
            Ok(())
        }
        Stopped::Exited(what) => bail!(
            "the {what} stopped on its own (QEMU {}{}); console tail ({}):\n{}",
            describe(kernel_status),
            mount_status
                .map(|s| format!(", mount {}", describe(s)))
                .unwrap_or_default(),
            console_path.display(),
            console::tail(&console_path, TAIL)
        ),
    }
}

/// Create and check the mount point before booting, so a bad one fails fast.
fn mount_point(dir: &Path) -> anyhow::Result<PathBuf> {
    check_fuse()?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating mount point {}", dir.display()))?;
    let abs = std::fs::canonicalize(dir)?;
    anyhow::ensure!(
        !is_mounted(&abs),
        "{} is already mounted (`cell0 umount {}` frees it)",
        abs.display(),
        dir.display()
    );
    Ok(abs)
}

/// Refuse an address something already listens on, or that we cannot bind.
fn check_free(listen: SocketAddrV4) -> anyhow::Result<()> {
    let taken = || {
        anyhow::anyhow!(
            "{listen} is already in use (another cell0 boot or node?); stop it, or pick another address with --listen"
        )
    };
    if TcpStream::connect_timeout(&listen.into(), Duration::from_secs(1)).is_ok() {
        return Err(taken());
    }
    match TcpListener::bind(listen) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(taken()),
        Err(e) => Err(e).with_context(|| format!("--listen {listen}: cannot listen there")),
    }
}

/// Read the console until `#E10`. `Ok(false)` if a signal came first.
fn wait_for_serving(
    kernel: &mut Running,
    lines: &mut Lines,
    signals: &mut Signals,
    timeout: Duration,
    console_path: &Path,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        match lines.next(Duration::from_millis(100)) {
            Ok(Some(line)) if console::is_serving_marker(&line) => return Ok(true),
            Ok(_) => {}
            Err(_) => {
                // The console closed: QEMU is exiting.
                let status = kernel.child.wait().ok();
                bail!(
                    "QEMU exited ({}) before the kernel served 9P; console tail ({}):\n{}",
                    describe(status),
                    console_path.display(),
                    console::tail(console_path, TAIL)
                );
            }
        }
        if signals.caught_within(Duration::ZERO) {
            return Ok(false);
        }
        if Instant::now() > deadline {
            kernel.kill();
            bail!(
                "the kernel did not serve 9P (print #E10) within {timeout:?}; stopped QEMU; console tail ({}):\n{}",
                console_path.display(),
                console::tail(console_path, TAIL)
            );
        }
    }
}

/// The owner token the kernel printed (`owner-token c0.…`), kept in a
/// 0600 file next to the console file, whose path is printed. A kernel
/// that prints none (it predates capabilities) gets `None` and a warning.
fn owner_token(lines: &mut Lines, console_path: &Path) -> anyhow::Result<Option<PathBuf>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut text = console::owner_token(&lines.text);
    // It may come right after the #E10 marker.
    while text.is_none() && Instant::now() < deadline {
        if lines.next(Duration::from_millis(100)).is_err() {
            break;
        }
        text = console::owner_token(&lines.text);
    }
    let Some(text) = text else {
        eprintln!("cell0: the kernel printed no owner-token line; attaching without a capability");
        return Ok(None);
    };
    cellfs::cap::Token::from_text(&text).map_err(|e| {
        anyhow::anyhow!(
            "the kernel's owner-token line is not a token: {e} (console: {})",
            console_path.display()
        )
    })?;
    let path = console::token_path(console_path);
    crate::identity::write_secret(&path, text.as_bytes())?;
    println!("owner token: {}", path.display());
    Ok(Some(path))
}

/// Wait until a 9P attach through the forwarded port succeeds.
fn wait_for_9p(
    kernel: &mut Running,
    addr: &str,
    console_path: &Path,
    token: Option<&PathBuf>,
) -> anyhow::Result<()> {
    let opts = match token {
        Some(p) => {
            let t = crate::identity::ClientToken::resolve(Some(p), None)?;
            crate::client::Options::new(Dialect::L).with_token(&t)
        }
        None => crate::client::Options::new(Dialect::L),
    };
    let deadline = Instant::now() + WAIT;
    loop {
        // A connection forwarded to a guest that never answers would
        // block; try on a thread and give up on it after a while.
        let (tx, rx) = std::sync::mpsc::channel();
        let a = addr.to_string();
        let o = opts.clone();
        std::thread::spawn(move || {
            let _ = tx.send(
                Client::connect_with(&a, &o)
                    .map(drop)
                    .map_err(|e| e.to_string()),
            );
        });
        let last = match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => "no answer to Tversion within 5 s".to_string(),
        };
        if let Some(status) = kernel.exited() {
            bail!(
                "QEMU exited ({status}) right after the kernel said it serves; console tail ({}):\n{}",
                console_path.display(),
                console::tail(console_path, TAIL)
            );
        }
        if Instant::now() > deadline {
            kernel.kill();
            bail!(
                "the kernel printed #E10 but {addr} does not answer 9P ({last}); stopped QEMU; console tail ({}):\n{}",
                console_path.display(),
                console::tail(console_path, TAIL)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `cell0 mount --foreground` of `addr` on `dir`, as `cell0 up` runs it.
fn start_mount(addr: &str, dir: &Path, token: Option<&PathBuf>) -> anyhow::Result<Running> {
    let exe = std::env::current_exe().context("finding the cell0 binary")?;
    let mut mount = Running {
        what: "mount",
        child: own_group_dies_with_us(
            Command::new(exe)
                .args(["mount", "--foreground", "--addr", addr])
                .args(
                    token
                        .map(|t| [std::ffi::OsStr::new("--token"), t.as_os_str()])
                        .into_iter()
                        .flatten(),
                )
                .arg(dir)
                .stdin(Stdio::null()),
        )
        .spawn()
        .context("starting the mount")?,
    };
    wait_until(&mut mount, WAIT, || is_mounted(dir))?;
    Ok(mount)
}

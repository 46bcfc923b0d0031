//! The agent's root: a fresh tmpfs holding only what a program needs,
//! read-only, made the root of the sandbox's mount namespace with
//! `pivot_root`, so that nothing of the host's file system is beneath it.
//!
//! What it holds (see agent(3)):
//!
//! - the host's system directories (`/usr`, `/bin`, `/sbin`, `/lib*`,
//!   `/etc`), bound read-only (symbolic links stay links);
//! - the program's own file at its own path, bound read-only from the
//!   descriptor the runner opened (its directory may be out of the
//!   sandbox's reach, and nothing else of it is needed);
//! - `/dev` with `null`, `zero`, `full`, `random`, `urandom` and `tty`
//!   bound from the host's, the `fd` and std stream links, a small
//!   `/dev/shm`;
//! - a `/proc` of its own pid namespace, its kernel settings (`sys`,
//!   `sysrq-trigger`, `irq`, `bus`) read-only;
//! - a private, writable `/tmp`;
//! - `/run/cell0/token`, the agent's capability, readable only by it;
//! - `/cell0`, where the tree is mounted.
//!
//! The root is put together on a tmpfs over `/tmp` of the sandbox's own
//! mount namespace (the host's `/tmp` is untouched), then pivoted to; the
//! old root is detached, so no path leads back to the host's.

use std::ffi::CString;
use std::fs;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Where the new root is put together, in this mount namespace only.
const STAGE: &str = "/tmp";
/// The host's directories a program needs to run, bound read-only.
const SYSTEM: [&str; 8] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];
/// Devices bound from the host's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// Kernel settings under `/proc` made read-only.
const PROC_READ_ONLY: [&str; 4] = ["sys", "sysrq-trigger", "irq", "bus"];
/// Where the agent's capability is.
pub const TOKEN_FILE: &str = "/run/cell0/token";

/// What goes into the root besides the system.
pub struct Layout<'a> {
    /// The program's path (where it is bound).
    pub program: &'a Path,
    /// The program, opened by the runner.
    pub program_fd: RawFd,
    /// The agent's capability, for [`TOKEN_FILE`].
    pub token: &'a [u8],
    /// The mount point of the tree (absolute).
    pub mount: &'a Path,
    /// Paths hidden wherever they appear in the root.
    pub hide: &'a [PathBuf],
}

/// Put the root together and pivot to it. The old root is gone from
/// this mount namespace afterwards; the root itself is still writable
/// (for the tree's mount point) until [`seal`].
pub fn build_and_enter(layout: &Layout<'_>) -> anyhow::Result<()> {
    let stage = Path::new(STAGE);
    mount_tmpfs(stage, "mode=0755,size=1m", 0).context("the new root")?;
    for dir in SYSTEM {
        system_dir(stage, Path::new(dir))?;
    }
    devices(stage)?;
    proc(stage)?;
    let tmp = stage.join("tmp");
    mkdir(&tmp, 0o1777)?;
    mount_tmpfs(&tmp, "mode=1777", libc::MS_NOSUID | libc::MS_NODEV).context("/tmp")?;
    run_dir(stage, layout.token)?;
    mkdir(&inside(stage, layout.mount), 0o755)?;
    program(stage, layout.program, layout.program_fd)?;
    for path in layout.hide {
        let p = inside(stage, path);
        if p.symlink_metadata().is_ok() {
            super::hide::cover(&p)?;
        }
    }
    super::hide::cover_fuse_under(stage)?;
    pivot(stage)
}

/// Make the root read-only (after the tree is mounted on it).
pub fn seal() -> anyhow::Result<()> {
    remount(
        Path::new("/"),
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
    )
    .context("making the root read-only")
}

/// `path` (absolute) under `root`.
fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// A host system directory in the new root: a link stays a link, a
/// directory is bound (with what is mounted under it) read-only, a
/// missing one is left out.
fn system_dir(stage: &Path, dir: &Path) -> anyhow::Result<()> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    let at = inside(stage, dir);
    if meta.file_type().is_symlink() {
        let target = fs::read_link(dir).with_context(|| format!("reading {}", dir.display()))?;
        std::os::unix::fs::symlink(&target, &at)
            .with_context(|| format!("linking {}", at.display()))?;
        return Ok(());
    }
    if !meta.is_dir() {
        return Ok(());
    }
    mkdir(&at, 0o755)?;
    bind(dir, &at, true)?;
    set_attr_recursive(
        &at,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    )
    .with_context(|| format!("making {} read-only", dir.display()))
}

/// `/dev`: a few devices bound from the host's, the usual links, a
/// small `/dev/shm`; read-only but for `shm`.
fn devices(stage: &Path) -> anyhow::Result<()> {
    let dev = stage.join("dev");
    mkdir(&dev, 0o755)?;
    mount_tmpfs(&dev, "mode=0755,size=64k", libc::MS_NOSUID).context("/dev")?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if host.exists() {
            let at = dev.join(name);
            touch(&at)?;
            bind(&host, &at, false)?;
            remount(&at, libc::MS_NOSUID | libc::MS_NOEXEC)?;
        }
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(link))
            .with_context(|| format!("linking /dev/{link}"))?;
    }
    let shm = dev.join("shm");
    mkdir(&shm, 0o1777)?;
    mount_tmpfs(&shm, "mode=1777,size=16m", libc::MS_NOSUID | libc::MS_NODEV)
        .context("/dev/shm")?;
    remount(&dev, libc::MS_RDONLY | libc::MS_NOSUID).context("making /dev read-only")
}

/// A `/proc` of the sandbox's pid namespace, its kernel settings
/// read-only. (Mounted while the old root is still there: the kernel
/// lets a user namespace mount a `/proc` only where one is fully visible
/// already, which the runner's mount of the namespace's own is.)
fn proc(stage: &Path) -> anyhow::Result<()> {
    let at = stage.join("proc");
    mkdir(&at, 0o555)?;
    mount(
        Some("proc"),
        &at,
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .context("mounting /proc")?;
    for name in PROC_READ_ONLY {
        let p = at.join(name);
        if p.exists() {
            bind(&p, &p, true)?;
            set_attr_recursive(&p, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
                .with_context(|| format!("making /proc/{name} read-only"))?;
        }
    }
    Ok(())
}

/// `/run/cell0/token` on a small tmpfs of its own, then read-only.
fn run_dir(stage: &Path, token: &[u8]) -> anyhow::Result<()> {
    let run = stage.join("run");
    mkdir(&run, 0o755)?;
    mount_tmpfs(&run, "mode=0755,size=64k", libc::MS_NOSUID | libc::MS_NODEV).context("/run")?;
    let dir = run.join("cell0");
    mkdir(&dir, 0o500)?;
    let file = dir.join("token");
    {
        use std::io::Write as _;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&file)
            .context("writing the agent's capability")?;
        f.write_all(token)
            .context("writing the agent's capability")?;
    }
    remount(
        &run,
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
    )
    .context("making /run read-only")
}

/// The program's file, at its own path: the runner's detached mount of
/// it (read-only already) attached there (unless a system directory
/// holds it already).
fn program(stage: &Path, path: &Path, fd: RawFd) -> anyhow::Result<()> {
    /// move_mount(2)'s flag (linux/mount.h): the source is `fd` itself.
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    let at = inside(stage, path);
    if at.symlink_metadata().is_ok() {
        return Ok(());
    }
    if let Some(parent) = at.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .with_context(|| format!("making {}", parent.display()))?;
    }
    touch(&at)?;
    let target = cstr(&at)?;
    // SAFETY: `fd` is the runner's open_tree descriptor, the paths are
    // NUL-terminated and outlive the call, which only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("attaching the program {}", path.display()));
    }
    // SAFETY: closing a descriptor this process owns and uses no more.
    unsafe { libc::close(fd) };
    Ok(())
}

/// Make `stage` the root, and let go of the old one.
fn pivot(stage: &Path) -> anyhow::Result<()> {
    std::env::set_current_dir(stage).context("entering the new root")?;
    // pivot_root(".", ".") stacks the old root on the new one; detaching
    // the top of "." then leaves only the new root.
    // SAFETY: both arguments are NUL-terminated literals.
    if unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pivot_root");
    }
    // SAFETY: a NUL-terminated literal.
    if unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error()).context("detaching the old root");
    }
    std::env::set_current_dir("/").context("entering /")?;
    Ok(())
}

fn mkdir(path: &Path, mode: u32) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .with_context(|| format!("making {}", path.display()))?;
    // The umask may have taken bits away.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn touch(path: &Path) -> anyhow::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o444)
        .open(path)
        .map(drop)
        .with_context(|| format!("making {}", path.display()))
}

fn cstr(path: &Path) -> anyhow::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} holds a NUL byte", path.display()))
}

/// mount(2), with the path named in the error.
fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> anyhow::Result<()> {
    let c = |s: Option<&str>| s.map(CString::new).transpose();
    let (source, fstype, data) = (
        c(source).context("mount source")?,
        c(fstype).context("mount type")?,
        c(data).context("mount options")?,
    );
    let target_c = cstr(target)?;
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string that
    // outlives the call; mount(2) only reads them.
    let r = unsafe {
        libc::mount(
            ptr(&source),
            target_c.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        bail!("mount on {}: {e}", target.display());
    }
    Ok(())
}

fn mount_tmpfs(at: &Path, options: &str, flags: libc::c_ulong) -> anyhow::Result<()> {
    mount(Some("tmpfs"), at, Some("tmpfs"), flags, Some(options))
}

fn bind(from: &Path, to: &Path, recursive: bool) -> anyhow::Result<()> {
    let rec = if recursive { libc::MS_REC } else { 0 };
    let from = from.to_str().context("a path that is not UTF-8")?;
    mount(Some(from), to, None, libc::MS_BIND | rec, None)
}

/// Remount the mount at `at` (a bind, or the root of a file system) with
/// `flags` (MS_RDONLY, MS_NOSUID, …), keeping it a bind.
fn remount(at: &Path, flags: libc::c_ulong) -> anyhow::Result<()> {
    mount(
        None,
        at,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | flags,
        None,
    )
}

/// `MOUNT_ATTR_*` of linux/mount.h: read-only.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// No set-user-id.
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// No devices.
pub const MOUNT_ATTR_NODEV: u64 = 0x4;

/// `struct mount_attr` of linux/mount.h (`MOUNT_ATTR_SIZE_VER0`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) (Linux 5.12): set `attrs` on the mount at `path`
/// relative to `dirfd`, as `flags` say (`AT_RECURSIVE`, `AT_EMPTY_PATH`).
pub fn set_mount_attrs(
    dirfd: RawFd,
    path: &std::ffi::CStr,
    flags: libc::c_int,
    attrs: u64,
) -> std::io::Result<()> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is NUL-terminated and `attr` a valid mount_attr,
    // both alive across the call, which only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Set `attrs` on the mount at `at` and every mount under it: a bind of a
/// directory with mounts under it (the host's `/etc` often has some)
/// becomes read-only as a whole.
fn set_attr_recursive(at: &Path, attrs: u64) -> anyhow::Result<()> {
    let path = cstr(at)?;
    Ok(set_mount_attrs(
        libc::AT_FDCWD,
        &path,
        libc::AT_RECURSIVE,
        attrs,
    )?)
}

//! Hiding from an agent what its copy of the host's mount table shows:
//! the host's FUSE mounts, and the paths the runner names (the node's
//! data directory, the runner's token).
//!
//! A new mount namespace starts as a copy of the host's, so it holds every
//! FUSE mount the host had: a user's `cell0 mount` of the tree with the
//! owner's capability among them. An agent must see the tree only through
//! its own mount (see agent(3)), so the shim detaches every FUSE mount it
//! inherited before it makes its own. Detaching in this namespace leaves
//! the host's mounts as they are, and no longer pins them: the host can
//! still unmount them while the agent runs.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Detach every FUSE mount listed in this mount namespace (deepest first);
/// how many there were. Only for a mount namespace of the sandbox's own:
/// the caller makes sure it is one.
pub fn detach_fuse_mounts() -> anyhow::Result<usize> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut points = fuse_mount_points(&text);
    // Deeper first, so a mount inside another is gone before its parent.
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in &points {
        let c = CString::new(p.as_os_str().as_bytes())
            .with_context(|| format!("mount point {}", p.display()))?;
        // SAFETY: `c` is NUL-terminated and outlives the call.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            let e = std::io::Error::last_os_error();
            // Gone with a parent detached before it.
            if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOENT) {
                bail!(
                    "cannot hide the host's FUSE mount on {} from the agent: {e}",
                    p.display()
                );
            }
        }
    }
    Ok(points.len())
}

/// Hide `path` in this mount namespace: an empty read-only tmpfs over a
/// directory, /dev/null (read-only) over a file. A path that does not
/// exist has nothing to hide.
pub fn cover(path: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("hiding {}", path.display())),
    };
    let target = CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("hiding {}", path.display()))?;
    let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: every pointer is to a NUL-terminated string that outlives
    // the call; mount(2) reads them only during it.
    let r = unsafe {
        if meta.is_dir() {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                flags,
                c"size=4k,mode=000".as_ptr().cast(),
            )
        } else {
            let bound = libc::mount(
                c"/dev/null".as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            );
            if bound != 0 {
                bound
            } else {
                libc::mount(
                    std::ptr::null(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REMOUNT | flags,
                    std::ptr::null(),
                )
            }
        }
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        bail!("cannot hide {} from the agent: {e}", path.display());
    }
    Ok(())
}

/// The mount points of FUSE file systems (`fuse`, `fuseblk`, `fuse.*`) in
/// a mountinfo text (proc(5): the fifth field is the mount point, the
/// file system type follows the ` - ` separator).
fn fuse_mount_points(text: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = after.split(' ').next().unwrap_or("");
        if !(fstype == "fuse" || fstype == "fuseblk" || fstype.starts_with("fuse.")) {
            continue;
        }
        if let Some(point) = before.split(' ').nth(4) {
            out.push(PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(point))));
        }
    }
    out
}

/// A mountinfo field with its octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_mounts_are_found_with_their_escapes_undone() {
        let text = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /tmp/my\\040cell rw,nosuid,nodev,relatime shared:20 - fuse.cell0 cell0@127.0.0.1:5640 rw,user_id=0,group_id=0
41 22 0:36 / /mnt/x rw - fuse sshfs rw
42 22 0:37 / /mnt/y rw - fuseblk /dev/sdb1 rw
43 22 0:38 / /proc rw - proc proc rw
44 22 0:39 / /run/fusectl rw - fusectl fusectl rw
";
        assert_eq!(
            fuse_mount_points(text),
            vec![
                PathBuf::from("/tmp/my cell"),
                PathBuf::from("/mnt/x"),
                PathBuf::from("/mnt/y")
            ]
        );
    }
}

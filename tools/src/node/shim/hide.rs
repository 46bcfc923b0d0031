//! Hiding from an agent what its root would otherwise show: the paths
//! the runner names (the node's data directory, the runner's token) where
//! a system directory of the root holds them, and FUSE mounts of the host
//! that came under a bound directory (a user's mount of the tree with the
//! owner's capability could).
//!
//! Mounts that came from the host are locked in the sandbox's user
//! namespace (the kernel will not let it unmount them, which would show
//! what they cover), so they are covered instead: an empty read-only
//! tmpfs over a directory, /dev/null over a file.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Cover every FUSE mount of this mount namespace that lies in the tree
/// of mounts whose top is at `root` (the new root being built). Mounts
/// the new root hides (a host FUSE mount under the host's own `/tmp`)
/// are not in it, though their paths start with `root`.
pub fn cover_fuse_under(root: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    for p in fuse_mounts_in(&text, root) {
        // Not looked at first: its server may refuse the sandbox.
        cover_as(&p, true)?;
    }
    Ok(())
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
    cover_as(path, meta.is_dir())
}

/// Hide `path`, a directory if `dir`, else a file.
fn cover_as(path: &Path, dir: bool) -> anyhow::Result<()> {
    let target = CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("hiding {}", path.display()))?;
    let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: every pointer is to a NUL-terminated string that outlives
    // the call; mount(2) reads them only during it.
    let r = unsafe {
        if dir {
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

/// One line of a mountinfo text (proc(5)): the mount's id, its
/// parent's, its mount point, its file system type.
struct MountLine {
    id: u64,
    parent: u64,
    point: PathBuf,
    fuse: bool,
}

fn mount_lines(text: &str) -> Vec<MountLine> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = after.split(' ').next().unwrap_or("");
        let mut f = before.split(' ');
        let (Some(id), Some(parent), Some(point)) = (f.next(), f.next(), f.nth(2)) else {
            continue;
        };
        let (Ok(id), Ok(parent)) = (id.parse(), parent.parse()) else {
            continue;
        };
        out.push(MountLine {
            id,
            parent,
            point: PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(point))),
            fuse: fstype == "fuse" || fstype == "fuseblk" || fstype.starts_with("fuse."),
        });
    }
    out
}

/// The mount points of FUSE file systems (`fuse`, `fuseblk`, `fuse.*`)
/// mounted, directly or not, on the topmost mount at `root`.
fn fuse_mounts_in(text: &str, root: &Path) -> Vec<PathBuf> {
    let lines = mount_lines(text);
    // The last mount listed at a point is the one on top.
    let Some(top) = lines.iter().rev().find(|l| l.point == root).map(|l| l.id) else {
        return Vec::new();
    };
    let under_top = |start: &MountLine| {
        let mut l = start;
        // Mount ids form a tree; a bound walk in case of a cycle.
        for _ in 0..lines.len() {
            if l.parent == top {
                return true;
            }
            match lines.iter().find(|p| p.id == l.parent) {
                Some(p) if p.id != l.id => l = p,
                _ => return false,
            }
        }
        false
    };
    lines
        .iter()
        .filter(|l| l.fuse && under_top(l))
        .map(|l| l.point.clone())
        .collect()
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
    fn fuse_mounts_are_found_in_the_new_root_only_with_their_escapes_undone() {
        // 50 is the new root on /tmp; 40 is a host FUSE mount under the
        // host's /tmp, which 50 hides; 60 and 61 came with a bind of /etc
        // into the new root.
        let text = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:30 / /tmp rw - tmpfs tmpfs rw
40 30 0:35 / /tmp/my\\040cell rw,nosuid,nodev,relatime shared:20 - fuse.cell0 cell0@127.0.0.1:5640 rw,user_id=0,group_id=0
50 30 0:36 / /tmp rw - tmpfs tmpfs rw
59 50 8:1 /etc /tmp/etc ro - ext4 /dev/sda1 rw
60 59 0:37 / /tmp/etc/x\\040y rw - fuse sshfs rw
61 60 0:38 / /tmp/etc/x\\040y/z rw - fuseblk /dev/sdb1 rw
62 50 0:39 / /tmp/proc rw - proc proc rw
";
        assert_eq!(
            fuse_mounts_in(text, Path::new("/tmp")),
            vec![
                PathBuf::from("/tmp/etc/x y"),
                PathBuf::from("/tmp/etc/x y/z")
            ]
        );
        assert!(fuse_mounts_in(text, Path::new("/nowhere")).is_empty());
    }
}

//! Writes the runner makes into a child's `/proc` and cgroup files: the
//! id maps of the child's user namespace, and single-write files.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use super::IdMap;
use crate::error::StartError;

/// Write `data` to the file at `path` in one write; the errno if that fails.
pub(super) fn write_file(path: &Path, data: &[u8]) -> Result<(), i32> {
    use std::io::Write as _;
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    f.write_all(data)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// Map the root of child `pid`'s user namespace to `map`'s ids. A root
/// runner leaves the child `setgroups`, which it uses once to drop every
/// supplementary group (it may then add only the one gid mapped); any
/// other runner must deny it first (the kernel's rule), and the child
/// keeps that runner's groups, which are no more than its own.
pub(super) fn write_id_maps(pid: i32, map: IdMap) -> Result<(), StartError> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let step = |errno| StartError::Sandbox {
        step: "map the user namespace",
        errno,
    };
    // SAFETY: geteuid takes nothing and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        write_file(&proc.join("setgroups"), b"deny").map_err(step)?;
    }
    write_file(
        &proc.join("uid_map"),
        format!("0 {} 1\n", map.uid).as_bytes(),
    )
    .map_err(step)?;
    write_file(
        &proc.join("gid_map"),
        format!("0 {} 1\n", map.gid).as_bytes(),
    )
    .map_err(step)
}

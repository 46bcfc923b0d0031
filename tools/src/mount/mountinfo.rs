//! Whether the kernel lists a directory as a mount point
//! (`/proc/self/mountinfo`).

use std::path::Path;

/// Whether `dir` (an absolute, canonical path) is a mount point now.
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    listed(&info, &dir.to_string_lossy())
}

/// Whether `mountinfo` text lists `dir` as a mount point (field 5).
fn listed(mountinfo: &str, dir: &str) -> bool {
    mountinfo
        .lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|p| unescape(p) == dir))
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
98 22 0:50 / /tmp/my\\040cell rw,nosuid,nodev,relatime shared:60 - fuse.cell0 cell0@127.0.0.1:5640 rw,user_id=0,group_id=0
";

    #[test]
    fn mount_points_are_found_with_their_escapes_undone() {
        assert!(listed(INFO, "/"));
        assert!(listed(INFO, "/tmp/my cell"));
        assert!(!listed(INFO, "/tmp/my"));
        assert!(!listed(INFO, "/tmp"));
    }

    #[test]
    fn the_root_is_always_mounted_here() {
        assert!(is_mounted(Path::new("/")));
    }
}

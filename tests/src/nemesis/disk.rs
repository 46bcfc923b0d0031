//! A small data disk for one node (a tmpfs mounted on its data
//! directory) that the nemesis fills to the last byte and empties again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The size of the small disk.
const SIZE: &str = "64m";

/// A tmpfs on a node's data directory; unmounted when dropped.
pub struct Disk {
    /// The node it belongs to (0-based).
    pub node: usize,
    mount: PathBuf,
}

impl Disk {
    /// Mount a tmpfs on `dir` (which must exist) for node `node`.
    pub fn mount(node: usize, dir: &Path) -> Disk {
        let opt = format!("size={SIZE},mode=0700");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opt, "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(st.success(), "mounting a tmpfs on {} failed", dir.display());
        Disk {
            node,
            mount: dir.to_path_buf(),
        }
    }

    fn filler(&self) -> PathBuf {
        self.mount.join("nemesis.filler")
    }

    /// Fill the disk: write zeros until the file system says it is full.
    pub fn fill(&self) {
        let mut f = std::fs::File::create(self.filler()).expect("filler file");
        let chunk = vec![0u8; 1 << 20];
        loop {
            match f.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        // The last bytes, one by one up to a page.
        for _ in 0..4096 {
            if !matches!(f.write(&[0]), Ok(1)) {
                break;
            }
        }
    }

    /// Give the space back.
    pub fn empty(&self) {
        let _ = std::fs::remove_file(self.filler());
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

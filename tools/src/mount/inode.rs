//! Inodes the kernel knows: each holds one walked fid and its path.
//!
//! Inode numbers come from qid paths, which the node keeps unique for the
//! life of a file, so a file keeps its inode number across lookups. FUSE's
//! root is inode 1 whatever the node's root qid is, so the root's qid path
//! and the qid path that would naturally map to 1 trade places.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::client::ROOT;

/// FUSE's inode number for the root.
pub const ROOT_INO: u64 = 1;

/// Maps qid paths to inode numbers, one to one.
#[derive(Clone, Copy, Debug)]
pub struct InoMap {
    root_path: u64,
}

impl InoMap {
    /// A map for a tree whose root has qid path `root_path`.
    pub fn new(root_path: u64) -> InoMap {
        InoMap { root_path }
    }

    /// The inode number of the file with qid path `path`: path + 1, except
    /// that the root is 1 and the path that would have been 1 (qid path 0)
    /// takes the root's place.
    pub fn ino(&self, path: u64) -> u64 {
        if path == self.root_path {
            ROOT_INO
        } else if path == ROOT_INO - 1 {
            self.root_path.wrapping_add(1)
        } else {
            path.wrapping_add(1)
        }
    }
}

/// One inode: the fid that points at it and where it is (for messages).
#[derive(Debug)]
struct Inode {
    fid: u32,
    nlookup: u64,
    path: Arc<str>,
}

/// What a lookup did with the fid it walked.
#[derive(Debug, PartialEq, Eq)]
pub enum Remembered {
    /// The fid now belongs to the inode.
    Kept,
    /// The inode already had a fid; clunk this one.
    Spare(u32),
}

/// The inodes the kernel holds, by number.
#[derive(Debug)]
pub struct Inodes {
    table: Mutex<HashMap<u64, Inode>>,
}

impl Inodes {
    /// A table holding only the root, on fid [`ROOT`].
    pub fn new() -> Inodes {
        let mut table = HashMap::new();
        table.insert(
            ROOT_INO,
            Inode {
                fid: ROOT,
                nlookup: 1,
                path: Arc::from("/"),
            },
        );
        Inodes {
            table: Mutex::new(table),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Inode>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fid and path of inode `ino`, if the kernel still holds it.
    pub fn get(&self, ino: u64) -> Option<(u32, Arc<str>)> {
        self.lock().get(&ino).map(|i| (i.fid, i.path.clone()))
    }

    /// A lookup found `ino` at `path` with a freshly walked `fid`: count
    /// the lookup and keep the fid unless the inode has one.
    pub fn remember(&self, ino: u64, fid: u32, path: Arc<str>) -> Remembered {
        let mut t = self.lock();
        match t.get_mut(&ino) {
            Some(i) => {
                i.nlookup += 1;
                Remembered::Spare(fid)
            }
            None => {
                t.insert(
                    ino,
                    Inode {
                        fid,
                        nlookup: 1,
                        path,
                    },
                );
                Remembered::Kept
            }
        }
    }

    /// The kernel dropped `n` lookups of `ino`; the fid to clunk if that
    /// was the last. The root is never forgotten.
    pub fn forget(&self, ino: u64, n: u64) -> Option<u32> {
        if ino == ROOT_INO {
            return None;
        }
        let mut t = self.lock();
        let i = t.get_mut(&ino)?;
        if i.nlookup > n {
            i.nlookup -= n;
            return None;
        }
        t.remove(&ino).map(|i| i.fid)
    }
}

/// The path of `name` in the directory at `parent` (for messages).
pub fn child_path(parent: &str, name: &str) -> Arc<str> {
    if parent.ends_with('/') {
        Arc::from(format!("{parent}{name}"))
    } else {
        Arc::from(format!("{parent}/{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_numbers_are_one_to_one_with_the_root_at_1() {
        let m = InoMap::new(0);
        assert_eq!(m.ino(0), 1);
        assert_eq!(m.ino(5), 6);
        // A node whose root is not qid path 0 (diod: the directory's inode).
        let m = InoMap::new(1000);
        assert_eq!(m.ino(1000), 1);
        assert_eq!(m.ino(0), 1001);
        assert_eq!(m.ino(999), 1000);
        assert_eq!(m.ino(7), 8);
        let mut seen: Vec<u64> = [0, 1, 7, 999, 1000, 1001]
            .iter()
            .map(|&p| m.ino(p))
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 6, "no two qid paths share an inode");
    }

    #[test]
    fn lookups_count_and_the_last_forget_returns_the_fid() {
        let t = Inodes::new();
        assert_eq!(t.remember(6, 10, child_path("/", "chan")), Remembered::Kept);
        assert_eq!(
            t.remember(6, 11, child_path("/", "chan")),
            Remembered::Spare(11)
        );
        assert_eq!(
            t.get(6).map(|(f, p)| (f, p.to_string())),
            Some((10, "/chan".into()))
        );
        assert_eq!(t.forget(6, 1), None);
        assert_eq!(t.forget(6, 1), Some(10));
        assert_eq!(t.get(6), None);
        assert_eq!(t.forget(ROOT_INO, 100), None);
        assert_eq!(t.get(ROOT_INO).map(|(f, _)| f), Some(ROOT));
    }

    #[test]
    fn child_paths_join_with_one_slash() {
        assert_eq!(&*child_path("/", "chan"), "/chan");
        assert_eq!(&*child_path("/chan", "a"), "/chan/a");
    }
}

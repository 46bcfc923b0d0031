//! The FUSE file system: each FUSE request becomes 9P2000.L requests.
//!
//! Every inode the kernel holds has one walked fid; every open file a fid
//! of its own, cloned from it. Files are opened with direct I/O and every
//! attribute and entry has a zero TTL: the files are synthetic and change
//! under the reader, so the page cache must never answer for the node.
//!
//! Reads and writes do not wait on a FUSE worker: they go out with a
//! callback that answers the kernel from the client's reader thread, so a
//! read blocked on an empty channel holds up nothing else. Every error is
//! logged with the operation and path; the errno goes to the caller as the
//! node sent it.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use ninep::{Attr, Body, QidType};

use super::handle::{Handle, Handles};
use super::inode::{InoMap, Inodes, Remembered, child_path};
use super::interrupt::Watcher;
use super::log::Sink;
use super::read::Read;
use crate::client::{AT_REMOVEDIR, Client, ClientError, ROOT, SetAttr, setattr};

/// Attributes and entries are never cached: status files change all the
/// time.
const TTL: Duration = Duration::ZERO;
/// Bytes of directory entries asked for per Treaddir.
const READDIR_COUNT: u32 = 32 * 1024;
/// Open flags passed on to the node (access mode and the ones that change
/// how the node writes); creation flags were handled by the kernel.
const OPEN_FLAGS: i32 = libc::O_ACCMODE | libc::O_APPEND | libc::O_SYNC | libc::O_DSYNC;

/// The page size the kernel splits writes by.
const PAGE: usize = 4096;
/// The kernel's default limit on pages per FUSE request.
const KERNEL_MAX_PAGES: u32 = 256;

/// The mounted tree.
pub struct CellFs {
    client: Client,
    inos: InoMap,
    inodes: Inodes,
    handles: Handles,
    watcher: Arc<Watcher>,
    /// Where errors are told (see [`Sink`]).
    log: Sink,
    /// The largest write to a message file that the kernel is sure to
    /// hand over in one piece (set at init; see `init`).
    max_message: std::sync::atomic::AtomicU32,
}

fn time(sec: u64, nsec: u64) -> SystemTime {
    UNIX_EPOCH + Duration::new(sec, nsec.min(999_999_999) as u32)
}

fn since_epoch(t: SystemTime) -> (u64, u64) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs(), u64::from(d.subsec_nanos()))
}

/// The file type in a Linux mode (or the qid, if the node left it out).
fn kind_of(a: &Attr) -> FileType {
    match a.mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFREG => FileType::RegularFile,
        _ if a.qid.ty.is_dir() => FileType::Directory,
        _ => FileType::RegularFile,
    }
}

/// The file type of a readdir `d_type`.
fn kind_of_dtype(ty: u8) -> FileType {
    match ty {
        libc::DT_DIR => FileType::Directory,
        libc::DT_LNK => FileType::Symlink,
        libc::DT_CHR => FileType::CharDevice,
        libc::DT_BLK => FileType::BlockDevice,
        libc::DT_FIFO => FileType::NamedPipe,
        libc::DT_SOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

/// The errno for `e`, logged with what was being done where.
pub(super) fn fail(log: &Sink, op: &str, path: &str, e: &ClientError) -> Errno {
    log.line(format_args!("{op} {path}: {e}"));
    Errno::from_i32(e.errno())
}

/// Where a mount is, for what it tells and whom it watches.
pub struct Place {
    /// The `/proc` of the pid namespace of the mount's users (FUSE
    /// requests carry their thread ids in that namespace).
    pub proc: std::path::PathBuf,
    /// Where errors are told.
    pub log: Sink,
}

impl Place {
    /// A mount of this host's: its `/proc`, this process's stderr.
    pub fn here() -> Place {
        Place {
            proc: std::path::PathBuf::from("/proc"),
            log: Sink::Stderr,
        }
    }
}

impl CellFs {
    /// A file system over a client attached to the node's root, mounted
    /// at `place`.
    pub fn new(client: Client, place: Place) -> std::io::Result<CellFs> {
        let watcher = Watcher::start(client.clone(), place.proc)?;
        Ok(CellFs {
            inos: InoMap::new(client.root_qid().path),
            client,
            inodes: Inodes::new(),
            handles: Handles::default(),
            watcher,
            log: place.log,
            max_message: std::sync::atomic::AtomicU32::new(0),
        })
    }

    fn file_attr(&self, a: &Attr) -> FileAttr {
        FileAttr {
            ino: INodeNo(self.inos.ino(a.qid.path)),
            size: a.size,
            blocks: a.blocks,
            atime: time(a.atime_sec, a.atime_nsec),
            mtime: time(a.mtime_sec, a.mtime_nsec),
            ctime: time(a.ctime_sec, a.ctime_nsec),
            crtime: time(a.btime_sec, a.btime_nsec),
            kind: kind_of(a),
            perm: (a.mode & 0o7777) as u16,
            nlink: u32::try_from(a.nlink).unwrap_or(u32::MAX),
            uid: a.uid,
            gid: a.gid,
            rdev: u32::try_from(a.rdev).unwrap_or(0),
            blksize: 4096,
            flags: 0,
        }
    }

    /// The fid and path of inode `ino`.
    fn inode(&self, ino: INodeNo) -> Result<(u32, Arc<str>), Errno> {
        self.inodes.get(ino.0).ok_or(Errno::ESTALE)
    }

    /// Walk to `name` in `parent`, fetch its attributes and remember the
    /// inode (one more lookup for the kernel to forget).
    fn lookup_entry(&self, op: &str, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let (dir, dir_path) = self.inode(parent)?;
        // A 9P tree has only UTF-8 names: any other cannot exist.
        let name = name.to_str().ok_or(Errno::ENOENT)?;
        let path = child_path(&dir_path, name);
        let fid = match self.client.walk(dir, &[name]) {
            Ok(fid) => fid,
            // Looking up a name that is not there is how programs ask
            // whether it exists: not worth a log line.
            Err(e) if op == "lookup" && e.errno() == libc::ENOENT => return Err(Errno::ENOENT),
            Err(e) => return Err(fail(&self.log, op, &path, &e)),
        };
        let attr = match self.client.getattr(fid) {
            Ok(a) => a,
            Err(e) => {
                let _ = self.client.clunk(fid);
                return Err(fail(&self.log, op, &path, &e));
            }
        };
        let ino = self.inos.ino(attr.qid.path);
        if let Remembered::Spare(spare) = self.inodes.remember(ino, fid, path) {
            let _ = self.client.clunk(spare);
        }
        Ok(self.file_attr(&attr))
    }

    /// A fresh fid on inode `ino`, opened with `flags`; returns its handle.
    fn open_handle(&self, op: &str, ino: INodeNo, flags: i32) -> Result<u64, Errno> {
        let (fid0, path) = self.inode(ino)?;
        let fid = self
            .client
            .walk(fid0, &[])
            .map_err(|e| fail(&self.log, op, &path, &e))?;
        match self.client.lopen(fid, (flags & OPEN_FLAGS) as u32) {
            Ok(opened) => Ok(self.handles.insert(Handle {
                fid,
                iounit: opened.iounit,
                path,
                message: opened.qid.ty.0 & QidType::APPEND.0 != 0,
            })),
            Err(e) => {
                let _ = self.client.clunk(fid);
                Err(fail(&self.log, op, &path, &e))
            }
        }
    }

    fn handle(&self, fh: FileHandle) -> Result<Arc<Handle>, Errno> {
        self.handles.get(fh.0).ok_or(Errno::EBADF)
    }

    fn close_handle(&self, fh: FileHandle) {
        if let Some(h) = self.handles.remove(fh.0)
            && let Err(e) = self.client.clunk(h.fid)
        {
            self.log.line(format_args!("close {}: {e}", h.path));
        }
    }

    /// Tunlinkat, or (for servers without it, like diod) a walk to the
    /// name and Tremove, as Linux's own 9P client does.
    fn remove(&self, op: &str, parent: INodeNo, name: &OsStr, flags: u32) -> Result<(), Errno> {
        let (dir, dir_path) = self.inode(parent)?;
        let name = name.to_str().ok_or(Errno::ENOENT)?;
        let r = match self.client.unlinkat(dir, name, flags) {
            Err(e) if e.errno() == libc::EOPNOTSUPP => self
                .client
                .walk(dir, &[name])
                .and_then(|fid| self.client.remove(fid)),
            r => r,
        };
        r.map_err(|e| fail(&self.log, op, &child_path(&dir_path, name), &e))
    }

    /// Apply `a` to `fid`. A truncation to 0 that the node refuses is
    /// accepted when the file is empty anyway (ctl and stream files have
    /// length 0), so `echo x > ctl` works through O_TRUNC on any node.
    fn set(&self, fid: u32, path: &str, a: &SetAttr) -> Result<(), Errno> {
        let Err(e) = self.client.setattr(fid, a) else {
            return Ok(());
        };
        let empty_already = a.valid & setattr::SIZE != 0
            && a.size == 0
            && self.client.getattr(fid).is_ok_and(|now| now.size == 0);
        if !empty_already {
            return Err(fail(&self.log, "setattr", path, &e));
        }
        let rest = SetAttr {
            valid: a.valid & !setattr::SIZE,
            ..*a
        };
        if rest.valid == 0 {
            return Ok(());
        }
        self.client
            .setattr(fid, &rest)
            .map_err(|e| fail(&self.log, "setattr", path, &e))
    }
}

/// The Tsetattr for a FUSE setattr.
fn set_attr(
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
) -> SetAttr {
    let mut a = SetAttr::default();
    if let Some(m) = mode {
        a.valid |= setattr::MODE;
        a.mode = m;
    }
    if let Some(u) = uid {
        a.valid |= setattr::UID;
        a.uid = u;
    }
    if let Some(g) = gid {
        a.valid |= setattr::GID;
        a.gid = g;
    }
    if let Some(s) = size {
        a.valid |= setattr::SIZE;
        a.size = s;
    }
    match atime {
        Some(TimeOrNow::Now) => a.valid |= setattr::ATIME,
        Some(TimeOrNow::SpecificTime(t)) => {
            a.valid |= setattr::ATIME | setattr::ATIME_SET;
            (a.atime_sec, a.atime_nsec) = since_epoch(t);
        }
        None => {}
    }
    match mtime {
        Some(TimeOrNow::Now) => a.valid |= setattr::MTIME,
        Some(TimeOrNow::SpecificTime(t)) => {
            a.valid |= setattr::MTIME | setattr::MTIME_SET;
            (a.mtime_sec, a.mtime_nsec) = since_epoch(t);
        }
        None => {}
    }
    a
}

impl Filesystem for CellFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // A FUSE write may be a little larger than one Twrite, so that a
        // write(2) of a message too large for one reaches `write` whole
        // and is refused there rather than split by the kernel into
        // several messages.
        let iounit = self.client.iounit();
        let want =
            u32::try_from((iounit as usize).next_multiple_of(PAGE) + PAGE).unwrap_or(u32::MAX);
        let mut max_write = want;
        if let Err(max) = config.set_max_write(want) {
            max_write = max;
            let _ = config.set_max_write(max);
        }
        // The kernel cuts a write into requests of at most max_pages pages
        // of the caller's buffer (256 pages at most by default), so a
        // buffer that does not start on a page boundary loses up to a
        // page: anything above one page less than that may arrive in
        // pieces, each too small to be refused.
        let pages = max_write.min(KERNEL_MAX_PAGES * PAGE as u32);
        let whole = pages.saturating_sub(PAGE as u32).min(iounit);
        self.max_message
            .store(whole, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lookup_entry("lookup", parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if let Some(fid) = self.inodes.forget(ino.0, nlookup) {
            let _ = self.client.clunk(fid);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let r = self.inode(ino).and_then(|(fid, path)| {
            self.client
                .getattr(fid)
                .map_err(|e| fail(&self.log, "getattr", &path, &e))
        });
        match r {
            Ok(a) => reply.attr(&TTL, &self.file_attr(&a)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let a = set_attr(mode, uid, gid, size, atime, mtime);
        let r = self.inode(ino).and_then(|(fid, path)| {
            if a.valid != 0 {
                self.set(fid, &path, &a)?;
            }
            self.client
                .getattr(fid)
                .map_err(|e| fail(&self.log, "getattr", &path, &e))
        });
        match r {
            Ok(a) => reply.attr(&TTL, &self.file_attr(&a)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let r = (|| {
            let (dir, dir_path) = self.inode(parent)?;
            let n = name.to_str().ok_or(Errno::EINVAL)?;
            self.client
                .mkdir(dir, n, mode & 0o7777, req.gid())
                .map_err(|e| fail(&self.log, "mkdir", &child_path(&dir_path, n), &e))?;
            self.lookup_entry("mkdir", parent, name)
        })();
        match r {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove("unlink", parent, name, 0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove("rmdir", parent, name, AT_REMOVEDIR) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = (|| {
            let (dir, dir_path) = self.inode(parent)?;
            let n = name.to_str().ok_or(Errno::EINVAL)?;
            let path = child_path(&dir_path, n);
            let fid = self
                .client
                .walk(dir, &[])
                .map_err(|e| fail(&self.log, "create", &path, &e))?;
            let lflags =
                (flags & (OPEN_FLAGS | libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC)) as u32;
            let opened = match self
                .client
                .lcreate(fid, n, lflags, mode & 0o7777, req.gid())
            {
                Ok(o) => o,
                Err(e) => {
                    let _ = self.client.clunk(fid);
                    return Err(fail(&self.log, "create", &path, &e));
                }
            };
            let fh = self.handles.insert(Handle {
                fid,
                iounit: opened.iounit,
                path,
                message: opened.qid.ty.0 & QidType::APPEND.0 != 0,
            });
            match self.lookup_entry("create", parent, name) {
                Ok(attr) => Ok((fh, attr)),
                Err(e) => {
                    self.close_handle(FileHandle(fh));
                    Err(e)
                }
            }
        })();
        match r {
            Ok((fh, attr)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.open_handle("open", ino, flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        // Watch the caller while the node keeps the read waiting (a
        // request from the kernel itself has no caller: pid 0).
        let tid = req.pid();
        let key = (tid != 0).then(|| self.watcher.register(tid));
        let read = Read {
            client: self.client.clone(),
            watcher: self.watcher.clone(),
            key,
            log: self.log.clone(),
            path: h.path.clone(),
            fid: h.fid,
            offset,
            count: size.min(h.iounit),
            size,
        };
        read.send(reply, false);
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let max_message = self
            .max_message
            .load(std::sync::atomic::Ordering::Relaxed)
            .min(h.iounit);
        if h.message && data.len() > max_message as usize {
            // One write is one message, and this one is larger than one
            // can be here: refuse it rather than send it in parts.
            self.log.line(format_args!(
                "write {}: {} bytes is more than one message holds ({max_message}); refused",
                h.path,
                data.len(),
            ));
            return reply.error(Errno::EMSGSIZE);
        }
        if data.len() > h.iounit as usize {
            // Larger than the node takes at once (max_write is the msize's
            // iounit, this file's is smaller): successive writes, here.
            return match self.client.write_all(h.fid, offset, data, h.iounit) {
                Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
                Err(e) => reply.error(fail(&self.log, "write", &h.path, &e)),
            };
        }
        // A write can wait on the node too (a full channel with
        // full=block): watch its caller as a read's, so that Ctrl-C or
        // kill cancels it with Tflush instead of leaving it unkillable.
        let tid = req.pid();
        let key = (tid != 0).then(|| self.watcher.register(tid));
        let watcher = self.watcher.clone();
        let log = self.log.clone();
        let path = h.path.clone();
        let body = Body::Twrite {
            fid: h.fid,
            offset,
            data,
        };
        let sent = self.client.start_with(&body, move |answer| {
            if let Some(k) = key {
                watcher.done(k);
            }
            match answer.and_then(|r| r.write_count()) {
                Ok(n) => reply.written(n),
                Err(ClientError::Flushed) => {
                    log.line(format_args!(
                        "write {path}: the writer was interrupted; cancelled with Tflush"
                    ));
                    reply.error(Errno::EINTR);
                }
                Err(e) => reply.error(fail(&log, "write", &path, &e)),
            }
        });
        if let (Some(k), Some(id)) = (key, sent) {
            self.watcher.sent(k, id, false);
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes go straight to the node; nothing is buffered here.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.close_handle(fh);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.handle(fh).and_then(|h| {
            self.client
                .fsync(h.fid, datasync)
                .map_err(|e| fail(&self.log, "fsync", &h.path, &e))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.open_handle("opendir", ino, libc::O_RDONLY) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        match self.client.readdir(h.fid, offset, READDIR_COUNT) {
            Ok(entries) => {
                for d in entries {
                    let ino = INodeNo(self.inos.ino(d.qid.path));
                    if reply.add(ino, d.offset, kind_of_dtype(d.ty), &d.name) {
                        break; // The kernel's buffer is full; it asks again.
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(fail(&self.log, "readdir", &h.path, &e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.close_handle(fh);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.client.statfs(ROOT) {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
            ),
            Err(e) => reply.error(fail(&self.log, "statfs", "/", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_and_times_become_setattr_bits() {
        let a = set_attr(None, None, None, Some(0), None, Some(TimeOrNow::Now));
        assert_eq!(a.valid, setattr::SIZE | setattr::MTIME);
        assert_eq!(a.size, 0);
        let t = UNIX_EPOCH + Duration::new(5, 7);
        let a = set_attr(
            Some(0o644),
            None,
            None,
            None,
            Some(TimeOrNow::SpecificTime(t)),
            None,
        );
        assert_eq!(a.valid, setattr::MODE | setattr::ATIME | setattr::ATIME_SET);
        assert_eq!((a.mode, a.atime_sec, a.atime_nsec), (0o644, 5, 7));
        assert_eq!(set_attr(None, None, None, None, None, None).valid, 0);
    }

    #[test]
    fn file_types_come_from_the_mode_else_the_qid() {
        let mut a = Attr {
            mode: libc::S_IFDIR | 0o755,
            ..Attr::default()
        };
        assert_eq!(kind_of(&a), FileType::Directory);
        a.mode = 0o644;
        assert_eq!(kind_of(&a), FileType::RegularFile);
        a.qid.ty = ninep::QidType::DIR;
        assert_eq!(kind_of(&a), FileType::Directory);
        assert_eq!(kind_of_dtype(libc::DT_DIR), FileType::Directory);
        assert_eq!(kind_of_dtype(libc::DT_REG), FileType::RegularFile);
    }
}

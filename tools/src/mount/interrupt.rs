//! Cancelling a blocked read when the program behind it is interrupted.
//!
//! fuser 0.18 does not deliver FUSE_INTERRUPT to the file system: its
//! session answers it with ENOSYS itself (request.rs, "TODO: handle
//! FUSE_INTERRUPT"), after which the kernel stops sending interrupts and,
//! once a request is with the file system, waits for the answer however
//! the caller is signalled. Ctrl-C on `cat events` would hang there.
//!
//! So every read waiting on the node is registered here with the thread
//! that made it (the FUSE request's pid is the caller's thread id, in the
//! pid namespace of whoever mounted), and a watcher thread looks at that
//! thread's signals in `/proc/TID/status` of that namespace every
//! [`POLL`] (an agent's sandbox has a pid namespace of its own, whose
//! `/proc` the runner reads through the sandbox's root). When a signal that would end or interrupt the system
//! call is pending, the 9P read is cancelled with Tflush; its FUSE request
//! is then answered EINTR (or with the data, if the node answered first).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::client::{Client, RequestId};

/// How often a blocked read checks on its caller.
pub const POLL: Duration = Duration::from_millis(50);

/// SIGKILL, which the kernel also queues on every thread of a process that
/// a fatal signal is ending.
const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);
/// Signals whose default action is to stop the process: pending ones
/// (Ctrl-Z) take effect when the read returns and must not abort it.
const STOP_BITS: u64 = (1 << (libc::SIGSTOP - 1))
    | (1 << (libc::SIGTSTP - 1))
    | (1 << (libc::SIGTTIN - 1))
    | (1 << (libc::SIGTTOU - 1));

/// Whether the signal state in a `/proc/TID/status` text means the system
/// call should end: a pending SIGKILL (a fatal signal), or any pending,
/// unblocked signal other than an uncaught stop signal (it would run a
/// handler, or end or dump the process).
fn interrupting(status: &str) -> bool {
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let pending = field("SigPnd:") | field("ShdPnd:");
    let live = pending & !field("SigBlk:");
    let harmless = STOP_BITS & !field("SigCgt:");
    pending & SIGKILL_BIT != 0 || live & !harmless != 0
}

/// Whether thread `tid` (of the pid namespace whose `/proc` is `proc`)
/// has a signal pending that should end its read. A thread that is gone
/// has nobody waiting for the answer: true.
pub fn signal_pending(proc: &Path, tid: u32) -> bool {
    match std::fs::read_to_string(proc.join(tid.to_string()).join("status")) {
        Ok(status) => interrupting(&status),
        Err(_) => true,
    }
}

struct Watched {
    tid: u32,
    /// Unknown until the request is on the wire; replaced when an empty
    /// answer is asked for again (see `read.rs`).
    request: Option<RequestId>,
    /// The request last flushed for it: a read asked again after its
    /// caller was signalled is flushed too, once.
    flushed: Option<RequestId>,
    /// Whether the read was asked for again: the first asking's id, if
    /// it comes in after (its answer can come before its sender gets
    /// back), must not replace the second's.
    asked_again: bool,
}

#[derive(Default)]
struct Table {
    next_key: u64,
    reads: HashMap<u64, Watched>,
}

/// The reads being watched, and the thread that watches them.
pub struct Watcher {
    table: Mutex<Table>,
    wake: Condvar,
}

/// A registered read; pass it to [`Watcher::sent`] and [`Watcher::done`].
#[derive(Clone, Copy, Debug)]
pub struct Key(u64);

impl Watcher {
    /// Start the watcher thread; it reads callers' threads in `proc` and
    /// flushes on `client`.
    pub fn start(client: Client, proc: PathBuf) -> std::io::Result<Arc<Watcher>> {
        let w = Arc::new(Watcher {
            table: Mutex::new(Table::default()),
            wake: Condvar::new(),
        });
        let me = w.clone();
        std::thread::Builder::new()
            .name("cell0-interrupts".into())
            .spawn(move || me.run(&client, &proc))?;
        Ok(w)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A read for thread `tid` is about to be sent.
    pub fn register(&self, tid: u32) -> Key {
        let mut t = self.lock();
        let key = t.next_key;
        t.next_key += 1;
        t.reads.insert(
            key,
            Watched {
                tid,
                request: None,
                flushed: None,
                asked_again: false,
            },
        );
        Key(key)
    }

    /// The read went out as `request` (unless it already finished);
    /// `again` when it is the second asking after an empty answer.
    pub fn sent(&self, key: Key, request: RequestId, again: bool) {
        let mut t = self.lock();
        if let Some(w) = t.reads.get_mut(&key.0) {
            if again || !w.asked_again {
                w.request = Some(request);
            }
            w.asked_again |= again;
            self.wake.notify_one();
        }
    }

    /// The read finished (answered, failed or flushed).
    pub fn done(&self, key: Key) {
        self.lock().reads.remove(&key.0);
    }

    fn run(&self, client: &Client, proc: &Path) {
        loop {
            let watched: Vec<(u64, u32)> = {
                let mut t = self.lock();
                while !t.reads.values().any(|w| w.request.is_some()) {
                    t = self.wake.wait(t).unwrap_or_else(|e| e.into_inner());
                }
                t.reads
                    .iter()
                    .filter(|(_, w)| w.request.is_some())
                    .map(|(k, w)| (*k, w.tid))
                    .collect()
            };
            std::thread::sleep(POLL);
            for (key, tid) in watched {
                if !signal_pending(proc, tid) {
                    continue;
                }
                // Flush what it waits on now, not what it waited on when
                // the list was taken: an empty answer may have been asked
                // for again meanwhile, and that read must end too (left
                // unwatched, its caller stayed unkillable until the node
                // had something to say). It stays watched until answered.
                let request = {
                    let mut t = self.lock();
                    t.reads.get_mut(&key).and_then(|w| {
                        let r = w.request?;
                        (w.flushed != Some(r)).then(|| {
                            w.flushed = Some(r);
                            r
                        })
                    })
                };
                if let Some(r) = request {
                    client.flush(r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(pnd: u64, shd: u64, blk: u64, cgt: u64) -> String {
        format!(
            "Name:\tcat\nSigQ:\t0/1\nSigPnd:\t{pnd:016x}\nShdPnd:\t{shd:016x}\nSigBlk:\t{blk:016x}\nSigIgn:\t0000000000000000\nSigCgt:\t{cgt:016x}\n"
        )
    }

    fn bit(sig: i32) -> u64 {
        1 << (sig - 1)
    }

    fn id(tag: u16) -> RequestId {
        RequestId::new(tag, 0)
    }

    #[test]
    fn a_read_asked_again_is_the_one_watched_whatever_order_its_ids_come_in() {
        let w = Watcher {
            table: Mutex::default(),
            wake: Condvar::new(),
        };
        // The empty answer came (and the read was asked again) before the
        // first asking's sender got back to report its id.
        let k = w.register(7);
        w.sent(k, id(2), true);
        w.sent(k, id(1), false);
        assert_eq!(w.lock().reads[&k.0].request, Some(id(2)));
        // In the usual order too.
        let k = w.register(8);
        w.sent(k, id(3), false);
        w.sent(k, id(4), true);
        assert_eq!(w.lock().reads[&k.0].request, Some(id(4)));
    }

    #[test]
    fn nothing_pending_means_keep_waiting() {
        assert!(!interrupting(&status(0, 0, 0, 0)));
    }

    #[test]
    fn a_fatal_ctrl_c_shows_as_sigkill_and_interrupts() {
        assert!(interrupting(&status(bit(libc::SIGKILL), 0, 0, 0)));
        assert!(interrupting(&status(bit(libc::SIGKILL), 0, !0, 0)));
    }

    #[test]
    fn a_caught_or_dumping_signal_interrupts_unless_blocked() {
        let int = bit(libc::SIGINT);
        assert!(interrupting(&status(0, int, 0, int)));
        assert!(!interrupting(&status(0, int, int, int)));
        assert!(interrupting(&status(0, bit(libc::SIGQUIT), 0, 0)));
    }

    #[test]
    fn ctrl_z_waits_unless_the_program_catches_it() {
        let tstp = bit(libc::SIGTSTP);
        assert!(!interrupting(&status(0, tstp, 0, 0)));
        assert!(interrupting(&status(0, tstp, 0, tstp)));
    }

    #[test]
    fn this_thread_is_quiet_and_a_gone_one_counts_as_interrupted() {
        let proc = Path::new("/proc");
        assert!(!signal_pending(proc, std::process::id()));
        assert!(signal_pending(proc, u32::MAX - 1));
    }
}

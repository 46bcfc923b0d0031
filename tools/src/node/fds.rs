//! A node's file descriptors: the soft limit raised to the hard one at
//! start, and what the accept loop does when they run out.
//!
//! Out of descriptors, `accept` fails at once for as long as a connection
//! waits in the listen queue: retried blindly, it spins a core and floods
//! the log, while the waiting clients hang. Instead the node keeps one
//! descriptor in reserve (`/dev/null`); when `accept` fails for want of
//! descriptors it gives the reserve back, accepts the waiting connection
//! and closes it at once (the client sees its connection closed, not a
//! hang), takes the reserve again, and says so at most once per
//! [`REPORT_EVERY`].

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

/// How often running out of descriptors is reported.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// How long to wait before accepting again when even the reserve cannot
/// be had (another thread took the descriptor it freed).
const PAUSE: Duration = Duration::from_millis(50);

/// The soft and hard limits on open descriptors.
pub(crate) fn get() -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass, which lives here.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim)
}

/// The limit on open descriptors in force (0 if it cannot be read).
pub fn limit() -> u64 {
    get().map_or(0, |l| l.rlim_cur)
}

/// Raise the soft limit on open descriptors to the hard limit; returns
/// the limit now in force.
pub fn raise_limit() -> io::Result<u64> {
    let mut lim = get()?;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass; raising the soft
        // limit up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim = raised;
    }
    Ok(lim.rlim_cur)
}

/// Whether `e` means the process (or the system) is out of descriptors.
fn exhausted(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Accepts connections, shedding them while descriptors run out.
#[derive(Debug)]
pub struct Acceptor {
    /// The descriptor kept to free when `accept` runs out.
    reserve: Option<File>,
    /// The limit on descriptors, for the report.
    limit: u64,
    /// Connections closed for want of descriptors since the last report.
    shed: u64,
    /// Other accept failures since the last report.
    failed: u64,
    /// When the last report was made.
    reported: Option<Instant>,
}

impl Acceptor {
    /// An acceptor for a process allowed `limit` descriptors.
    pub fn new(limit: u64) -> Acceptor {
        Acceptor {
            reserve: File::open("/dev/null").ok(),
            limit,
            shed: 0,
            failed: 0,
            reported: None,
        }
    }

    /// The next connection `listener` accepts.
    pub async fn accept(&mut self, listener: &TcpListener) -> TcpStream {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => return stream,
                Err(e) if exhausted(&e) => {
                    self.shed_one(listener).await;
                    self.report(&e);
                }
                Err(e) => {
                    self.failed += 1;
                    self.report(&e);
                    tokio::time::sleep(PAUSE).await;
                }
            }
        }
    }

    /// Close the connection that waits, with the reserve's descriptor.
    async fn shed_one(&mut self, listener: &TcpListener) {
        let Some(reserve) = self.reserve.take() else {
            self.reserve = File::open("/dev/null").ok();
            tokio::time::sleep(PAUSE).await;
            return;
        };
        drop(reserve);
        // The listener is ready (a connection waits), so this returns at
        // once; a timeout keeps a connection that went away from stalling
        // the loop.
        let accepted = tokio::time::timeout(PAUSE, listener.accept()).await;
        if let Ok(Ok((stream, _))) = accepted {
            drop(stream);
            self.shed += 1;
        }
        self.reserve = File::open("/dev/null").ok();
        if self.reserve.is_none() {
            tokio::time::sleep(PAUSE).await;
        }
    }

    /// Say what went wrong, at most once per [`REPORT_EVERY`].
    fn report(&mut self, e: &io::Error) {
        let now = Instant::now();
        if self
            .reported
            .is_some_and(|t| now.duration_since(t) < REPORT_EVERY)
        {
            return;
        }
        self.reported = Some(now);
        if exhausted(e) {
            eprintln!(
                "cell0: out of file descriptors (limit {}): closed {} new connection(s) at once; \
                 raise the limit (ulimit -n) or close clients (said at most every {}s)",
                self.limit,
                self.shed,
                REPORT_EVERY.as_secs()
            );
        } else {
            eprintln!(
                "cell0: accept failed: {e} ({} time(s); said at most every {}s)",
                self.failed,
                REPORT_EVERY.as_secs()
            );
        }
        self.shed = 0;
        self.failed = 0;
    }
}

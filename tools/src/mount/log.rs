//! The mount's log: one timestamped line per event, on standard error
//! (which is the log file when the mount runs in the background), or, for
//! a mount the runner serves for an agent's sandbox, on that agent's own
//! standard error ([`Sink`]).

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Write one line: `<unix seconds.millis> <text>`.
pub fn line(args: fmt::Arguments<'_>) {
    Sink::Stderr.line(args);
}

/// Where a mount's lines go.
#[derive(Clone, Debug)]
pub enum Sink {
    /// This process's standard error.
    Stderr,
    /// A file: an agent's standard error, handed over by its sandbox.
    File(Arc<File>),
}

impl Sink {
    /// Write one line: `<unix seconds.millis> <text>`.
    pub fn line(&self, args: fmt::Arguments<'_>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let text = format!("{}.{:03} {args}\n", now.as_secs(), now.subsec_millis());
        // Nothing sensible to do if the log itself cannot be written.
        let _ = match self {
            Sink::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
            Sink::File(f) => (&**f).write_all(text.as_bytes()),
        };
    }
}

/// Log a line with `format!` syntax.
macro_rules! log {
    ($($t:tt)*) => { $crate::mount::log::line(format_args!($($t)*)) };
}
pub(crate) use log;

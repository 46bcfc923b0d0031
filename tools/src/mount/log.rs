//! The mount's log: one timestamped line per event, on standard error
//! (which is the log file when the mount runs in the background).

use std::fmt;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Write one line: `<unix seconds.millis> <text>`.
pub fn line(args: fmt::Arguments<'_>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut err = std::io::stderr().lock();
    // Nothing sensible to do if the log itself cannot be written.
    let _ = writeln!(err, "{}.{:03} {args}", now.as_secs(), now.subsec_millis());
}

/// Log a line with `format!` syntax.
macro_rules! log {
    ($($t:tt)*) => { $crate::mount::log::line(format_args!($($t)*)) };
}
pub(crate) use log;

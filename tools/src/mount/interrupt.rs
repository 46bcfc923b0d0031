//! Noticing that the process behind a blocked read was interrupted.
//!
//! fuser 0.18 answers FUSE_INTERRUPT with ENOSYS itself, after which the
//! kernel stops sending interrupts and waits for our answer however the
//! reader is signalled; Ctrl-C on `cat events` would then hang. So while a
//! read waits, we look at the reader's pending signals in
//! `/proc/TID/status` (a fatal signal shows as a pending SIGKILL), and
//! cancel the 9P read with Tflush when one appears.

/// Whether thread `tid` has a signal pending that it does not block.
pub fn signal_pending(tid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        // The reader is gone: nobody waits for the answer any more.
        return true;
    };
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    (field("SigPnd:") | field("ShdPnd:")) & !field("SigBlk:") != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_thread_has_nothing_pending_and_a_gone_one_counts_as_interrupted() {
        assert!(!signal_pending(std::process::id()));
        assert!(signal_pending(u32::MAX - 1));
    }
}

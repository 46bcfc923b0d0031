//! A bounded log: the last bytes of a stream, dropped a line at a time
//! from the front, with a cursor so a reader can follow it without
//! reading anything twice.

use std::collections::VecDeque;

/// The last `max` bytes of a stream (or fewer: after a trim the log
/// starts at a line's beginning when it can).
#[derive(Clone, Debug)]
pub(crate) struct LogBuf {
    buf: VecDeque<u8>,
    max: usize,
    /// The stream offset of `buf[0]`: how many bytes were ever dropped.
    start: u64,
}

/// Output read from an agent's log with [`crate::Supervisor::read_log`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogChunk {
    /// The bytes from the cursor (or from the oldest kept byte) to the end.
    pub data: Vec<u8>,
    /// The cursor for the next read: the stream offset just past `data`.
    pub next: u64,
    /// Bytes between the cursor asked for and `data` that were dropped
    /// before they were read (the log keeps only its last bytes).
    pub skipped: u64,
}

impl LogBuf {
    /// An empty log keeping at most `max` bytes (at least one).
    pub(crate) fn new(max: usize) -> LogBuf {
        LogBuf {
            buf: VecDeque::new(),
            max: max.max(1),
            start: 0,
        }
    }

    /// Append `data`, dropping the oldest bytes past the bound.
    pub(crate) fn push(&mut self, data: &[u8]) {
        // Appended whole, then cut: the byte before the cut must be seen
        // to tell whether the cut falls on a line's beginning.
        self.buf.extend(data);
        if self.buf.len() <= self.max {
            return;
        }
        let mut cut = self.buf.len() - self.max;
        // Drop the rest of the line the cut falls in, so the log reads
        // from a line's beginning; unless that is the last line, which is
        // then kept in part rather than lost.
        if cut > 0
            && self.buf[cut - 1] != b'\n'
            && let Some(nl) = self.buf.range(cut..).position(|&b| b == b'\n')
            && cut + nl + 1 < self.buf.len()
        {
            cut += nl + 1;
        }
        self.buf.drain(..cut);
        self.start += cut as u64;
    }

    /// Keep at most `max` bytes from now on (at least one), trimming now
    /// if needed; the stream offsets go on as before.
    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max.max(1);
        self.push(&[]);
    }

    /// Everything kept.
    pub(crate) fn contents(&self) -> Vec<u8> {
        self.buf.iter().copied().collect()
    }

    /// What was written from stream offset `from` on.
    pub(crate) fn since(&self, from: u64) -> LogChunk {
        let end = self.start + self.buf.len() as u64;
        let from = from.min(end);
        let skipped = self.start.saturating_sub(from);
        let at = from.max(self.start) - self.start;
        LogChunk {
            data: self.buf.range(at as usize..).copied().collect(),
            next: end,
            skipped,
        }
    }

    /// The last `n` lines (a last line without its newline counts), as
    /// text; bytes that are not UTF-8 read as U+FFFD.
    pub(crate) fn tail_lines(&self, n: usize) -> Vec<String> {
        let bytes = self.contents();
        let text = String::from_utf8_lossy(&bytes);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        if text.is_empty() {
            return Vec::new();
        }
        let mut lines: Vec<String> = text.rsplit('\n').take(n).map(String::from).collect();
        lines.reverse();
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_within_its_bound() {
        let mut log = LogBuf::new(16);
        for i in 0..100 {
            log.push(format!("line {i}\n").as_bytes());
        }
        let text = String::from_utf8(log.contents()).unwrap();
        assert!(text.len() <= 16, "{text:?}");
        assert!(text.ends_with("line 99\n"), "{text:?}");
        assert!(text.starts_with("line "), "{text:?}");
        assert_eq!(log.tail_lines(1), vec!["line 99"]);
    }

    #[test]
    fn a_chunk_larger_than_the_bound_is_cut_at_a_line() {
        let mut log = LogBuf::new(10);
        log.push(b"first\n");
        log.push(b"ab\ncdefgh\nijkl\nmn\n");
        assert_eq!(log.contents(), b"ijkl\nmn\n");
        assert_eq!(log.since(0).skipped, 16);
    }

    #[test]
    fn a_line_longer_than_the_bound_is_kept_in_part() {
        let mut log = LogBuf::new(4);
        log.push(b"abcdefgh");
        assert_eq!(log.contents(), b"efgh");
        log.push(b"\nxy");
        assert_eq!(log.contents(), b"xy");
        log.push(b"z\n");
        assert_eq!(log.tail_lines(5), vec!["xyz"]);
    }

    #[test]
    fn a_cursor_reads_each_byte_once_and_counts_what_was_dropped() {
        let mut log = LogBuf::new(8);
        log.push(b"ab\n");
        let c = log.since(0);
        assert_eq!((c.data.as_slice(), c.next, c.skipped), (&b"ab\n"[..], 3, 0));
        log.push(b"cd\n");
        let c2 = log.since(c.next);
        assert_eq!(c2.data, b"cd\n");
        log.push(b"efghijkl\n");
        let c3 = log.since(c2.next);
        assert_eq!(c3.next, 15);
        assert!(c3.skipped > 0);
        assert_eq!(c3.skipped + c3.data.len() as u64, 15 - c2.next);
        assert!(log.since(99).data.is_empty());
    }

    #[test]
    fn tail_of_nothing_is_nothing() {
        assert!(LogBuf::new(10).tail_lines(3).is_empty());
        let mut log = LogBuf::new(100);
        log.push(b"a\nb\nc\n");
        assert_eq!(log.tail_lines(2), vec!["b", "c"]);
    }
}

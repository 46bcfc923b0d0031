//! The kernel's console: QEMU's standard output, copied line by line to a
//! file and handed to `cell0 boot` until the kernel serves.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};

/// The default console file for a kernel whose 9P is forwarded to `port`.
pub fn default_path(port: u16) -> PathBuf {
    crate::config::runtime_dir().join(format!("cell0-boot-{port}.log"))
}

/// Copy every line of `from` to `file` (flushed line by line, so the file
/// is always current) and send it, without its line break, on `to` (while
/// anyone listens). Returns when `from` ends.
pub fn copy(from: impl Read + Send + 'static, mut file: File, to: Sender<String>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(from);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let _ = file.write_all(&buf);
            let _ = file.flush();
            let line = String::from_utf8_lossy(&buf);
            let _ = to.send(line.trim_end_matches(['\n', '\r']).to_string());
        }
    });
}

/// Whether a console line is the marker that says 9P is being served.
pub fn is_serving_marker(line: &str) -> bool {
    line.starts_with("#E10 ") || line == "#E10"
}

/// The last `n` lines of the console file, for an error message.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    if lines.is_empty() {
        return "  (the console is empty)".into();
    }
    lines[from..]
        .iter()
        .map(|l| format!("  | {}", l.trim_end_matches('\r')))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The owner token a kernel prints on its console (`owner-token c0.…`),
/// if `text` holds one (the last wins).
pub fn owner_token(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("owner-token "))
        .map(|t| t.trim().to_string())
        .rfind(|t| t.starts_with(cellfs::cap::token::TEXT_PREFIX))
}

/// Where the owner token read from console file `console` is kept: the
/// same name with the extension `.token`.
pub fn token_path(console: &Path) -> PathBuf {
    console.with_extension("token")
}

/// Lines received so far, kept for the boot proof.
pub struct Lines {
    rx: Receiver<String>,
    /// Every line received, each followed by `\n`.
    pub text: String,
}

impl Lines {
    /// Collect what arrives on `rx`.
    pub fn new(rx: Receiver<String>) -> Lines {
        Lines {
            rx,
            text: String::new(),
        }
    }

    /// Wait up to `wait` for the next line; `Err` once the console ended.
    pub fn next(
        &mut self,
        wait: std::time::Duration,
    ) -> Result<Option<String>, std::sync::mpsc::RecvTimeoutError> {
        use std::sync::mpsc::RecvTimeoutError;
        match self.rx.recv_timeout(wait) {
            Ok(line) => {
                self.text.push_str(&line);
                self.text.push('\n');
                Ok(Some(line))
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_token_line_is_found() {
        let text = "#E9 x\nowner-token c0.abc\n#E10 y\n";
        assert_eq!(owner_token(text).as_deref(), Some("c0.abc"));
        assert_eq!(owner_token("owner-token nonsense\n"), None);
        assert_eq!(owner_token("#E10\n"), None);
        assert_eq!(
            token_path(Path::new("/run/cell0/cell0-boot-5641.log")),
            Path::new("/run/cell0/cell0-boot-5641.token")
        );
    }

    #[test]
    fn only_the_e10_marker_means_serving() {
        assert!(is_serving_marker("#E10 9p port=564 chain=00"));
        assert!(!is_serving_marker("#E1 memory chain=00"));
        assert!(!is_serving_marker("#E100"));
    }

    #[test]
    fn lines_are_copied_to_the_file_and_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let (tx, rx) = std::sync::mpsc::channel();
        copy(
            std::io::Cursor::new(b"one\r\ntwo\nthree".to_vec()),
            File::create(&path).unwrap(),
            tx,
        );
        let mut lines = Lines::new(rx);
        let wait = std::time::Duration::from_secs(5);
        assert_eq!(lines.next(wait).unwrap().as_deref(), Some("one"));
        assert_eq!(lines.next(wait).unwrap().as_deref(), Some("two"));
        assert_eq!(lines.next(wait).unwrap().as_deref(), Some("three"));
        assert!(lines.next(wait).is_err());
        assert_eq!(lines.text, "one\ntwo\nthree\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\r\ntwo\nthree");
        assert_eq!(tail(&path, 2), "  | two\n  | three");
    }
}

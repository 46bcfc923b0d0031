//! `cell0 up`, the README's first command: it serves, mounts, and on
//! Ctrl-C (SIGINT) unmounts and stops, keeping the state for next time.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cell0_tests::{cell0_bin, free_port, is_mounted, output_within, require_tool, sh, sh_ok};

/// `cell0 up` running in `work`, killed if a test fails half-way.
struct Up {
    child: Option<Child>,
}

impl Up {
    fn start(work: &Path, addr: &str) -> Up {
        let child = Command::new(cell0_bin())
            .args(["up", "cell", "--listen", addr, "--data", "data"])
            .current_dir(work)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cell0 up starts");
        let mut up = Up { child: Some(child) };
        let cell = work.join("cell");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(&cell) {
            if let Some(st) = up.child.as_mut().unwrap().try_wait().unwrap() {
                let out = up.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "cell0 up exited with {st} before mounting:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(Instant::now() < deadline, "cell0 up did not mount {cell:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        up
    }

    /// Ctrl-C; returns what it printed once it has exited.
    fn interrupt(mut self) -> (bool, String) {
        let child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        let out = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("cell0 up did not stop within 60 s of SIGINT")
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn up_serves_mounts_and_stops_cleanly_on_ctrl_c() {
    require_tool("fusermount3", "apt-get install fuse3");
    let work = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let up = Up::start(work.path(), &addr);

    let status = sh_ok(
        work.path(),
        "mkdir cell/chan/kept && echo hello > cell/chan/kept/data && cat cell/status",
    );
    assert!(status.contains("channels 1"), "{status}");

    // A second `up` on the same mount point refuses and leaves the first alone.
    let again = output_within(
        30,
        Command::new(cell0_bin())
            .args(["up", "cell", "--listen", &addr, "--data", "data2"])
            .current_dir(work.path()),
    );
    assert!(!again.status.success());
    assert!(is_mounted(&work.path().join("cell")));

    let (ok, said) = up.interrupt();
    assert!(ok, "cell0 up failed on SIGINT:\n{said}");
    assert!(
        !is_mounted(&work.path().join("cell")),
        "still mounted after Ctrl-C:\n{said}"
    );
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "the node still listens after Ctrl-C:\n{said}"
    );

    // Next time, the channel and its message are still there.
    let up = Up::start(work.path(), &addr);
    let out = sh(work.path(), "timeout 10 head -n 1 cell/chan/kept/data");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    let (ok, said) = up.interrupt();
    assert!(ok, "{said}");
}

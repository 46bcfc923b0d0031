//! Running shell commands and checking tools exist.

use std::path::Path;
use std::process::{Command, Output};

/// Run `script` with bash in `dir`; return its output whatever its status.
/// A script still running after two minutes is killed with everything it
/// started, so a read that blocks fails the test instead of hanging it.
pub fn sh(dir: &Path, script: &str) -> Output {
    output_within(
        120,
        Command::new("bash").arg("-c").arg(script).current_dir(dir),
    )
}

/// Run `script` and return its stdout; panic with stderr if it fails.
pub fn sh_ok(dir: &Path, script: &str) -> String {
    let out = sh(dir, script);
    assert!(
        out.status.success(),
        "`{script}` failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Give the program `cmd` starts the default action for the signals
/// tests send it. A shell that runs a job in the background without job
/// control (a CI runner's, `nohup`) sets SIGINT and SIGQUIT to ignored,
/// exec keeps them ignored, and a test's Ctrl-C would then do nothing.
pub fn default_signals(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec, where
    // signal(2) is async-signal-safe and changes only the child.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGTSTP] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        })
    }
}

/// Panic, saying how to install it, unless `tool` is on PATH.
pub fn require_tool(tool: &str, install: &str) {
    let found = Command::new("bash")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: {install} (tests/run installs it)"
    );
}

/// Run `cmd` with its output captured, killing it if it is still running
/// after `secs` seconds, so a client that blocks fails the test instead of
/// hanging it. The returned status is then a failure by signal.
pub fn output_within(secs: u64, cmd: &mut Command) -> Output {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use std::os::unix::process::CommandExt;

    // Its own process group, so that a timeout kills what it started too
    // (a grandchild holding the pipes would otherwise keep us waiting).
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
    // Drain both pipes on their own threads so a chatty child cannot
    // block on a full pipe while we wait for it.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() >= deadline {
            // SAFETY: kill(2) of the process group this child leads.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let status = child.wait().expect("wait for killed child");
            eprintln!("{cmd:?} was still running after {secs} s and was killed");
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

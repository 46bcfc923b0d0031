//! Running the mount in the background, like sshfs: a detached child that
//! serves, and a parent that returns once the mount is usable.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::is_mounted;
use crate::identity::ClientToken;

/// How long `cell0 mount` waits for the mount to appear.
const MOUNT_WAIT: Duration = Duration::from_secs(15);

/// Where the background server of `dir` logs: `$XDG_RUNTIME_DIR/cell0/`,
/// else the temporary directory, named after the mount point.
pub fn log_path(dir: &Path) -> PathBuf {
    let name: String = dir
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    crate::config::runtime_dir().join(format!("cell0-mount{name}.log"))
}

/// Start `cell0 mount --foreground` detached, and return once `dir` is
/// mounted. If the child dies first, its log is the error.
///
/// An explicit token reaches the child on its standard input (never on
/// its command line, which anyone may read); the default one it finds
/// itself in the same data directory.
pub fn start(
    addr: &str,
    aname: &str,
    dir: &Path,
    token: &ClientToken,
    data: Option<&Path>,
) -> anyhow::Result<()> {
    let log = log_path(dir);
    let out = std::fs::File::create(&log)
        .with_context(|| format!("creating the mount's log {}", log.display()))?;
    let mut cmd = Command::new(std::env::current_exe().context("finding the cell0 binary")?);
    cmd.args(["mount", "--foreground", "--addr", addr, "--aname", aname]);
    let piped = match (&token.text, token.explicit) {
        (Some(_), true) => {
            cmd.args(["--token", "-"]);
            true
        }
        _ => {
            if let Some(d) = data {
                cmd.arg("--data").arg(d);
            }
            false
        }
    };
    cmd.arg(dir)
        .stdin(if piped { Stdio::piped() } else { Stdio::null() })
        .stdout(out.try_clone()?)
        .stderr(out);
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the
    // parent; it is the only thing run between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the mount process")?;
    if let (Some(mut stdin), Some(text)) = (child.stdin.take(), &token.text) {
        use std::io::Write as _;
        stdin
            .write_all(text.as_bytes())
            .context("handing the token to the mount process")?;
    }
    let deadline = Instant::now() + MOUNT_WAIT;
    while !is_mounted(dir) {
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("the mount process exited ({status}):\n{}", text.trim_end());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} did not appear as mounted within {MOUNT_WAIT:?}; see {}",
                dir.display(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "cell0: mounted {addr} on {} (server pid {}, log {}; `cell0 umount {}` to unmount)",
        dir.display(),
        child.id(),
        log.display(),
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_named_after_the_mount_point() {
        let p = log_path(Path::new("/tmp/my cell"));
        assert!(
            p.to_string_lossy().ends_with("cell0-mount_tmp_my_cell.log"),
            "{}",
            p.display()
        );
    }
}

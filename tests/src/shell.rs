//! Running shell commands and checking tools exist.

use std::path::Path;
use std::process::{Command, Output};

/// Run `script` with bash in `dir`; return its output whatever its status.
pub fn sh(dir: &Path, script: &str) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("bash runs")
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

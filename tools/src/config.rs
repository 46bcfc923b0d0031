//! Defaults every subcommand shares: addresses and the data directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where a hosted node listens and clients dial unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:5640";

/// The address a client verb dials: `flag`, else `$CELL0_ADDR`, else
/// [`DEFAULT_ADDR`].
pub fn client_addr(flag: Option<&str>) -> String {
    match flag {
        Some(a) => a.to_string(),
        None => std::env::var("CELL0_ADDR")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_ADDR.to_string()),
    }
}

/// The node's data directory unless `--data` says otherwise:
/// `$XDG_DATA_HOME/cell0`, else `~/.local/share/cell0`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(x).join("cell0");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    home.join(".local/share/cell0")
}

/// Where logs of background work go: `$XDG_RUNTIME_DIR/cell0/` (created if
/// need be), else the temporary directory.
pub fn runtime_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("cell0"))
        .filter(|d| std::fs::create_dir_all(d).is_ok())
        .unwrap_or_else(std::env::temp_dir)
}

/// Whether `tool` is an executable file in a directory of `$PATH`.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

/// `n` distinct loopback addresses whose ports were free a moment ago,
/// for servers a command starts for itself (benchmarks, tests). Every
/// listener is held until all are picked, so no port comes twice.
///
/// The ports are below Linux's ephemeral range (32768 and up by default):
/// a free port there can be taken by any outgoing connection — and a node
/// retrying its peers makes many — before the node given it binds it.
pub fn free_loopback_addrs(n: usize) -> std::io::Result<Vec<String>> {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Start somewhere that differs between processes, and never hand out
    // the same port twice in one.
    let start = (std::process::id() % 700) * 16;
    let mut held = Vec::new();
    for _ in 0..SPAN {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + k) % SPAN) as u16;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
            if held.len() == n {
                break;
            }
        }
    }
    if held.len() < n {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "no free loopback ports between 20000 and 32000",
        ));
    }
    held.iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect()
}

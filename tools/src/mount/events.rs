//! The node's error messages in the mount's log.
//!
//! 9P2000.L carries only an errno, so a refused `echo … > ctl` through the
//! mount says just "Invalid argument". The node puts the full message on
//! `/events` as an `error` line; the mount follows `/events` and copies
//! those lines into its log, where a FUSE user can find them. A node
//! without `/events` (diod) is simply not followed.

use crate::client::{Client, ClientError};

use super::log::log;

/// Follow `/events` on its own thread for as long as the connection lives.
pub fn follow(client: Client) {
    let spawned = std::thread::Builder::new()
        .name("cell0-events".into())
        .spawn(move || {
            if let Err(e) = copy_errors(&client) {
                log!("no longer following /events: {e}");
            }
        });
    if let Err(e) = spawned {
        log!("cannot follow /events: {e}");
    }
}

fn copy_errors(client: &Client) -> Result<(), ClientError> {
    let fid = match client.walk_path("/events") {
        Ok(fid) => fid,
        Err(_) => return Ok(()), // Not a Cell0 node.
    };
    let opened = client.lopen(fid, libc::O_RDONLY as u32)?;
    let mut offset = 0u64;
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let reply = client.read_reply(fid, offset, opened.iounit)?;
        let data = reply.read_data()?;
        if data.is_empty() {
            return Ok(());
        }
        offset += data.len() as u64;
        partial.extend_from_slice(data);
        while let Some(end) = partial.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&partial[..end]).into_owned();
            partial.drain(..=end);
            if is_error(&line) {
                log!("node: {line}");
            }
        }
    }
}

/// Whether an event line (`<seq> <unix-ms> <kind> <text>`) is an error.
fn is_error(line: &str) -> bool {
    line.split(' ').nth(2) == Some("error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_error_events_are_copied() {
        assert!(is_error(
            "7 1700000000000 error chan a: unknown verb \"x\"; expected clear"
        ));
        assert!(!is_error("8 1700000000000 create /chan/a"));
        assert!(!is_error("error"));
    }
}

//! Following `/events` for the agents whose desired state changed, so
//! the runner acts within a round trip instead of polling every agent.

use std::sync::mpsc::Sender;

use crate::client::{Client, mode};

use super::Notice;

/// Read `/events` on `client` until the session breaks or the runner is
/// gone, sending [`Notice::Changed`] for each agent an event names and
/// [`Notice::Resync`] when events were lost. Returns why it stopped.
pub fn follow(client: Client, tx: Sender<Notice>) -> String {
    let fid = match client.walk_path("/events") {
        Ok(fid) => fid,
        Err(e) => return format!("/events: {e}"),
    };
    let opened = match client.open(fid, mode::OREAD) {
        Ok(o) => o,
        Err(e) => return format!("/events: {e}"),
    };
    let count = client.effective_iounit(opened.iounit);
    // Whatever happened before this reader existed is what the first
    // full pass reads.
    if tx.send(Notice::Resync).is_err() {
        return String::new();
    }
    let mut offset = 0u64;
    loop {
        let reply = match client.read_reply(fid, offset, count) {
            Ok(r) => r,
            Err(e) => return format!("/events: {e}"),
        };
        let data = match reply.read_data() {
            Ok(d) => d,
            Err(e) => return format!("/events: {e}"),
        };
        if data.is_empty() {
            return "/events ended".to_string();
        }
        offset += data.len() as u64;
        for line in String::from_utf8_lossy(data).lines() {
            let msg = match changed(line) {
                Some(Seen::Agent(name)) => Notice::Changed(name.to_string()),
                Some(Seen::Placed(name, node)) => Notice::Placed(name.to_string(), node),
                Some(Seen::Lost) => Notice::Resync,
                None => continue,
            };
            if tx.send(msg).is_err() {
                return String::new();
            }
        }
    }
}

/// What an event line means to a runner.
#[derive(Debug, PartialEq, Eq)]
enum Seen<'a> {
    /// Agent NAME's desired state may have changed.
    Agent(&'a str),
    /// Agent NAME was placed on this node (`None`: on none, it waits).
    Placed(&'a str, Option<u64>),
    /// Events were lost: look at everything again.
    Lost,
}

/// The agent an event line (`SEQ MS KIND TEXT`) is about, unless it is
/// one of the runners' own reports (which change nothing a runner acts
/// on, except a claim, which the claimer knows of).
fn changed(line: &str) -> Option<Seen<'_>> {
    let mut words = line.splitn(4, ' ');
    let (_seq, _ms, kind) = (words.next()?, words.next()?, words.next()?);
    let text = words.next().unwrap_or("");
    match kind {
        "lost" => Some(Seen::Lost),
        "create" | "remove" => {
            let name = text.strip_prefix("/agent/")?;
            Some(Seen::Agent(name.split(' ').next()?))
        }
        // A node drained, fenced or let back: its agents may have to
        // leave or may run again.
        "swarm"
            if ["drain ", "undrain ", "fence ", "unfence "]
                .iter()
                .any(|p| text.starts_with(p)) =>
        {
            Some(Seen::Lost)
        }
        "place" => {
            let rest = text.strip_prefix("agent ")?;
            let (name, what) = rest.split_once(": ")?;
            let node = what
                .split(' ')
                .find_map(|w| w.strip_prefix("node=").or_else(|| w.strip_prefix("to=")))
                .and_then(|n| n.parse().ok());
            Some(Seen::Placed(name, node))
        }
        "ctl" | "drift" => {
            let rest = text.strip_prefix("agent ")?;
            let (name, what) = rest.split_once(": ")?;
            let reported = ["report ", "stderr ", "log ", "epoch "]
                .iter()
                .any(|p| what.starts_with(p));
            (kind == "drift" || !reported).then_some(Seen::Agent(name))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_name_the_agent_they_change() {
        assert_eq!(changed("3 100 create /agent/w1"), Some(Seen::Agent("w1")));
        assert_eq!(changed("4 100 remove /agent/w1"), Some(Seen::Agent("w1")));
        assert_eq!(
            changed("5 100 ctl agent w1: start"),
            Some(Seen::Agent("w1"))
        );
        assert_eq!(
            changed("6 100 drift agent w1: write /chan/out is outside its intent"),
            Some(Seen::Agent("w1"))
        );
        assert_eq!(changed("7 100 lost 12"), Some(Seen::Lost));
        assert_eq!(
            changed("7 100 place agent w1: moved from=2 to=3 reason=drain epoch=4"),
            Some(Seen::Placed("w1", Some(3)))
        );
        assert_eq!(
            changed("7 100 place agent w1: placed node=5 epoch=1"),
            Some(Seen::Placed("w1", Some(5)))
        );
        assert_eq!(
            changed("7 100 place agent w1: pending reason=no node can take it"),
            Some(Seen::Placed("w1", None))
        );
        assert_eq!(changed("7 100 ctl agent w1: epoch 4"), None);
        assert_eq!(changed("7 100 swarm drain node=2"), Some(Seen::Lost));
        assert_eq!(changed("7 100 swarm alive node=2"), None);
        // The runners' own lines, and other objects, are not changes.
        assert_eq!(
            changed("8 100 ctl agent w1: report running pid=3 node=n"),
            None
        );
        assert_eq!(changed("9 100 create /chan/jobs"), None);
        assert_eq!(changed("10 100 note agent w1: hello"), None);
        assert_eq!(changed("garbage"), None);
    }
}

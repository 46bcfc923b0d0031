//! The committed state of channels and how commands change it.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::command::Applied;
use crate::error::Error;
use crate::events::Kind;
use crate::node::MAX_OBJ;

use super::{data_node, dir_node};

/// Most messages a channel holds before writers get EAGAIN.
pub const MAX_MESSAGES: usize = 4096;
/// Most queued bytes a channel holds before writers get EAGAIN.
pub const MAX_BYTES: u64 = 64 << 20;

/// A channel mutation, as logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChanCmd {
    /// `mkdir /chan/NAME`, at a Unix time in seconds.
    Create { name: String, at: u64 },
    /// Removing `/chan/NAME`.
    Remove { name: String },
    /// One message written to `data`.
    Send { name: String, data: Vec<u8> },
    /// A read of `data`: receive up to `max` bytes of the next message.
    Take { name: String, max: u32 },
    /// The lines of one `ctl` write, applied together.
    Ctl { name: String, ops: Vec<ChanOp> },
    /// Put back what a Take received but could not deliver (its reader went
    /// away first); `more` says it was the first part of a longer message.
    Unread {
        name: String,
        data: Vec<u8>,
        more: bool,
    },
}

/// One line of a channel's ctl write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChanOp {
    /// Drop every queued message.
    Clear,
    /// Refuse writers; readers drain what is queued, then get end of file.
    Close,
    /// Accept writers again.
    Open,
}

/// One channel.
#[derive(Debug, Serialize, Deserialize)]
pub struct Chan {
    /// Its name under `/chan`.
    pub name: String,
    /// Messages not yet received, oldest first.
    pub queue: VecDeque<Vec<u8>>,
    /// Bytes in `queue`.
    pub bytes: u64,
    /// Messages ever written.
    pub sent: u64,
    /// Messages ever received in full.
    pub received: u64,
    /// Whether writers are accepted.
    pub open: bool,
    /// When it was made, in Unix seconds.
    pub created: u64,
    /// Bumped on every change (the qid version of its files).
    pub version: u32,
}

impl Chan {
    /// Why a write of `len` bytes would be refused now, if it would.
    pub fn refuse_send(&self, len: usize) -> Option<Error> {
        if !self.open {
            return Some(Error::Closed(format!(
                "chan {}: closed; write 'open' to its ctl to reopen",
                self.name
            )));
        }
        if self.queue.len() >= MAX_MESSAGES || self.bytes + len as u64 > MAX_BYTES {
            return Some(Error::Again(format!(
                "chan {}: full ({} messages, {} bytes queued); read some first",
                self.name,
                self.queue.len(),
                self.bytes
            )));
        }
        None
    }
}

/// Every channel, by name and by number.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Chans {
    by_name: BTreeMap<String, u64>,
    by_id: BTreeMap<u64, Chan>,
    last_id: u64,
}

impl Chans {
    /// How many channels exist.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Messages queued across all channels.
    pub fn queued(&self) -> usize {
        self.by_id.values().map(|c| c.queue.len()).sum()
    }

    /// The channel numbered `id`.
    pub fn get(&self, id: u64) -> Option<&Chan> {
        self.by_id.get(&id)
    }

    /// The number of the channel called `name`.
    pub fn id(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    /// Channel numbers in name order.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_name.values().copied()
    }

    fn find_mut(&mut self, name: &str) -> Result<(u64, &mut Chan), Error> {
        let id = self
            .id(name)
            .ok_or_else(|| Error::NotFound(format!("/chan/{name}")))?;
        let chan = self
            .by_id
            .get_mut(&id)
            .ok_or_else(|| Error::NotFound(format!("/chan/{name}")))?;
        Ok((id, chan))
    }

    /// Apply one channel command.
    pub fn apply(&mut self, cmd: &ChanCmd) -> Result<Applied, Error> {
        let mut done = Applied::default();
        match cmd {
            ChanCmd::Create { name, at } => {
                if self.by_name.contains_key(name) {
                    return Err(Error::Exists(format!("chan {name}")));
                }
                if self.last_id >= MAX_OBJ {
                    return Err(Error::Again(String::from(
                        "chan: channel numbers exhausted",
                    )));
                }
                self.last_id += 1;
                let id = self.last_id;
                self.by_name.insert(name.clone(), id);
                self.by_id.insert(
                    id,
                    Chan {
                        name: name.clone(),
                        queue: VecDeque::new(),
                        bytes: 0,
                        sent: 0,
                        received: 0,
                        open: true,
                        created: *at,
                        version: 0,
                    },
                );
                done.created = Some(dir_node(id));
                done.events.push((Kind::Create, format!("/chan/{name}")));
            }
            ChanCmd::Remove { name } => {
                let (id, _) = self.find_mut(name)?;
                self.by_name.remove(name);
                self.by_id.remove(&id);
                done.wake.push(data_node(id));
                done.events.push((Kind::Remove, format!("/chan/{name}")));
            }
            ChanCmd::Send { name, data } => {
                let (id, chan) = self.find_mut(name)?;
                if let Some(e) = chan.refuse_send(data.len()) {
                    return Err(e);
                }
                chan.bytes += data.len() as u64;
                chan.queue.push_back(data.clone());
                chan.sent += 1;
                chan.version = chan.version.wrapping_add(1);
                done.wake.push(data_node(id));
            }
            ChanCmd::Take { name, max } => {
                let (_, chan) = self.find_mut(name)?;
                let max = (*max).max(1) as usize;
                match chan.queue.front_mut() {
                    // Nothing queued: an open channel makes the reader wait
                    // again, a closed one gives it end of file.
                    None if chan.open => {}
                    None => done.data = Some(Vec::new()),
                    Some(head) if head.len() > max => {
                        let rest = head.split_off(max);
                        let part = core::mem::replace(head, rest);
                        chan.bytes -= part.len() as u64;
                        done.data = Some(part);
                        done.more = true;
                    }
                    Some(_) => {
                        let msg = chan.queue.pop_front().unwrap_or_default();
                        chan.bytes -= msg.len() as u64;
                        chan.received += 1;
                        done.data = Some(msg);
                    }
                }
                chan.version = chan.version.wrapping_add(1);
            }
            ChanCmd::Unread { name, data, more } => {
                // A channel removed meanwhile took its messages with it.
                let Ok((id, chan)) = self.find_mut(name) else {
                    return Ok(done);
                };
                match chan.queue.front_mut() {
                    Some(head) if *more => {
                        head.splice(0..0, data.iter().copied());
                    }
                    _ => {
                        chan.queue.push_front(data.clone());
                        chan.received = chan.received.saturating_sub(1);
                    }
                }
                chan.bytes += data.len() as u64;
                chan.version = chan.version.wrapping_add(1);
                done.wake.push(data_node(id));
            }
            ChanCmd::Ctl { name, ops } => {
                let (id, chan) = self.find_mut(name)?;
                for op in ops {
                    let word = match op {
                        ChanOp::Clear => {
                            chan.queue.clear();
                            chan.bytes = 0;
                            "clear"
                        }
                        ChanOp::Close => {
                            chan.open = false;
                            "close"
                        }
                        ChanOp::Open => {
                            chan.open = true;
                            "open"
                        }
                    };
                    done.events
                        .push((Kind::Ctl, format!("chan {name}: {word}")));
                }
                chan.version = chan.version.wrapping_add(1);
                // Closing wakes readers so that they see end of file.
                done.wake.push(data_node(id));
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn s(x: &str) -> String {
        String::from(x)
    }

    #[test]
    fn messages_come_out_in_order_and_long_ones_in_parts() {
        let mut c = Chans::default();
        c.apply(&ChanCmd::Create {
            name: s("a"),
            at: 1,
        })
        .unwrap();
        c.apply(&ChanCmd::Send {
            name: s("a"),
            data: b"hello".to_vec(),
        })
        .unwrap();
        c.apply(&ChanCmd::Send {
            name: s("a"),
            data: b"x".to_vec(),
        })
        .unwrap();
        let take = |c: &mut Chans, max| c.apply(&ChanCmd::Take { name: s("a"), max }).unwrap().data;
        assert_eq!(take(&mut c, 3), Some(b"hel".to_vec()));
        assert_eq!(take(&mut c, 3), Some(b"lo".to_vec()));
        assert_eq!(take(&mut c, 3), Some(b"x".to_vec()));
        assert_eq!(
            take(&mut c, 3),
            None,
            "empty open channel makes the reader wait"
        );
        c.apply(&ChanCmd::Send {
            name: s("a"),
            data: b"world".to_vec(),
        })
        .unwrap();
        let part = c
            .apply(&ChanCmd::Take {
                name: s("a"),
                max: 2,
            })
            .unwrap();
        assert!(part.more);
        c.apply(&ChanCmd::Unread {
            name: s("a"),
            data: part.data.unwrap(),
            more: true,
        })
        .unwrap();
        assert_eq!(
            take(&mut c, 9),
            Some(b"world".to_vec()),
            "an undelivered part goes back whole"
        );
        let id = c.id("a").unwrap();
        assert_eq!(
            (c.get(id).unwrap().sent, c.get(id).unwrap().received),
            (3, 3)
        );
    }

    #[test]
    fn failed_commands_change_nothing() {
        let mut c = Chans::default();
        c.apply(&ChanCmd::Create {
            name: s("a"),
            at: 1,
        })
        .unwrap();
        assert!(matches!(
            c.apply(&ChanCmd::Create {
                name: s("a"),
                at: 2
            }),
            Err(Error::Exists(_))
        ));
        c.apply(&ChanCmd::Ctl {
            name: s("a"),
            ops: vec![ChanOp::Close],
        })
        .unwrap();
        let err = c
            .apply(&ChanCmd::Send {
                name: s("a"),
                data: vec![1],
            })
            .unwrap_err();
        assert!(matches!(err, Error::Closed(_)));
        let id = c.id("a").unwrap();
        assert_eq!(c.get(id).unwrap().queue.len(), 0);
        assert_eq!(
            c.apply(&ChanCmd::Take {
                name: s("a"),
                max: 9
            })
            .unwrap()
            .data,
            Some(vec![])
        );
        assert!(matches!(
            c.apply(&ChanCmd::Remove { name: s("b") }),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn a_full_channel_refuses_with_again() {
        let mut c = Chans::default();
        c.apply(&ChanCmd::Create {
            name: s("a"),
            at: 1,
        })
        .unwrap();
        for _ in 0..MAX_MESSAGES {
            c.apply(&ChanCmd::Send {
                name: s("a"),
                data: vec![0],
            })
            .unwrap();
        }
        let err = c
            .apply(&ChanCmd::Send {
                name: s("a"),
                data: vec![0],
            })
            .unwrap_err();
        assert!(matches!(err, Error::Again(_)));
    }
}

//! What one node keeps of its channels and does with their commands on
//! either side of the log: counters and QoS buckets ([`qos::Meters`]),
//! the numbers it gave its senders' messages ([`Numbering`]), signing a
//! turn's messages together, numbering again a message the log refused
//! as overtaken, and giving back to a consumer group what a reader took
//! and did not read.

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::msg::{self, Stamp};
use super::nth::Numbering;
use super::{ChanCmd, ChanDev, DEV, K_GROUP, chan_id, qos};
use crate::command::{Applied, Command};
use crate::dev::{Aux, Ctx, ReadOutcome};
use crate::file::File;

/// The channel device's node-local slot.
#[derive(Debug, Default)]
pub struct Slot {
    /// Counters and QoS buckets.
    pub meters: qos::Meters,
    /// Sender numbers given to messages not yet seen applied. Requests
    /// are handled one at a time, so a `RefCell` lets the prepare hook,
    /// which sees the node through shared references, number.
    numbering: RefCell<Numbering>,
}

/// This node's channel counters and buckets.
pub fn meters<'a>(cx: &Ctx<'a>) -> Option<&'a qos::Meters> {
    cx.slot::<Slot>(DEV).map(|s| &s.meters)
}

/// Number and sign this turn's messages with one signature.
pub fn prepare(cx: &Ctx<'_>, idle: bool, batch: &mut [&mut Command]) {
    let Some(slot) = cx.slot::<Slot>(DEV) else {
        return;
    };
    let chans = &cx.state.chans;
    let mut numbering = slot.numbering.borrow_mut();
    numbering.forget_applied(chans, &cx.key.public(), idle);
    let mut stamps: Vec<(&mut Stamp, &[u8])> = batch
        .iter_mut()
        .filter_map(|c| match &mut **c {
            Command::Chan(ChanCmd::Send { name, stamp, data }) => {
                numbering.number(chans, name, stamp);
                Some((&mut **stamp, &data[..]))
            }
            _ => None,
        })
        .collect();
    msg::sign_batch(cx.key, &mut stamps);
}

/// Whether a refused message was overtaken by a later one of its sender
/// through this node (so numbering it again lets it through).
pub fn overtaken(cx: &Ctx<'_>, cmd: &Command) -> bool {
    let Command::Chan(ChanCmd::Send { name, stamp, .. }) = cmd else {
        return false;
    };
    let chans = &cx.state.chans;
    chans
        .id(name)
        .and_then(|id| chans.get(id))
        .is_some_and(|c| stamp.nth <= c.last_nth(&stamp.sender, &stamp.node))
}

/// Forget the counters of a removed channel.
pub fn applied(cx: &Ctx<'_>, cmd: &Command) {
    if let Command::Chan(ChanCmd::Remove { .. }) = cmd
        && let Some(m) = meters(cx)
    {
        let chans = &cx.state.chans;
        m.forget_removed(|id| chans.get(id).is_some());
    }
}

/// What gives back the rest of message `seq` that a fid on a group's file
/// `node` took and did not read to the end: the message was not
/// delivered, so another member gets it whole.
pub fn release(cx: &Ctx<'_>, node: File, aux: &Aux) -> Option<Command> {
    let Aux::Rest { seq, data } = aux else {
        return None;
    };
    if data.is_empty() || node.dev != DEV || node.kind != K_GROUP {
        return None;
    }
    let chan = cx.state.chans.get(chan_id(node))?;
    let (group, _) = ChanDev::group(chan, node)?;
    Some(Command::Chan(ChanCmd::Unread {
        name: chan.name.clone(),
        group: String::from(group),
        seq: *seq,
    }))
}

/// What puts back a message a group's read took for a reader that is
/// gone before it was answered.
pub fn undo(cmd: &Command, applied: &Applied) -> Option<Command> {
    let seq = applied.taken?;
    let Command::Chan(ChanCmd::Take { name, group, .. }) = cmd else {
        return None;
    };
    Some(Command::Chan(ChanCmd::Unread {
        name: name.clone(),
        group: group.clone(),
        seq,
    }))
}

/// Whether a read delivered a message, and its number when known.
pub fn message(aux: &Aux, outcome: &ReadOutcome, data: &[u8]) -> Option<Option<u64>> {
    let message = match (outcome, aux) {
        (ReadOutcome::Propose(_), _) => true,
        (_, Aux::Seq { .. }) => !data.is_empty(),
        _ => false,
    };
    if !message {
        return None;
    }
    Some(match *aux {
        Aux::Seq { next, off: 0 } => next.checked_sub(1),
        Aux::Seq { next, .. } => Some(next),
        _ => None,
    })
}

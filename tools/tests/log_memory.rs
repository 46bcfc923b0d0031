//! The log since the last snapshot is held in memory, so a few large
//! writes must bring a snapshot as many small ones do (issue 19): a node
//! taking 300 MB of channel messages, of which the channel keeps one,
//! stays far below that.

use std::path::Path;

use cell0::client::{Client, Options, mode};
use cell0::identity::ClientToken;
use cell0_tests::{Node, rss_kib};
use ninep::Dialect;

#[test]
fn large_writes_do_not_pile_up_in_memory() {
    let node = Node::start();
    for args in [
        &["mkdir", "/chan/big"][..],
        &["write", "/chan/big/ctl", "retain count=1"][..],
    ] {
        let (ok, _, err) = node.cell0(args);
        assert!(ok, "{args:?}: {err}");
    }
    let token = ClientToken::resolve(Some(Path::new(&node.owner_token())), None).unwrap();
    let c = Client::connect_with(&node.addr, &Options::new(Dialect::L).with_token(&token))
        .expect("attach");
    let fid = c.walk_path("/chan/big/data").unwrap();
    let opened = c.open(fid, mode::OWRITE).unwrap();
    let size = (512 * 1024).min(opened.iounit as usize);
    let message = vec![7u8; size];
    let mut peak = 0;
    let total = 300 * 1024 * 1024;
    for i in 0..total / size {
        c.write(fid, 0, &message).expect("a message is taken");
        if i % 50 == 0 {
            peak = peak.max(rss_kib(node.pid()));
        }
    }
    peak = peak.max(rss_kib(node.pid()));
    println!(
        "{} MiB written in {size}-byte messages: peak RSS {} MiB",
        total >> 20,
        peak / 1024
    );
    assert!(
        peak < 200 * 1024,
        "the node held {} MiB after 300 MiB of messages it keeps one of",
        peak / 1024
    );
}

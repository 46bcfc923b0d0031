//! `/proof`: what this node can prove about itself. See proof(3).
//!
//! `boot` holds the boot ledger ([`boot::Ledger`]): the kernel's `#E0` …
//! `#E10` markers; a hosted node, which Linux booted, has none and says so.
//! `chain` is the hash chain over every committed entry, one line per entry
//! with its command bytes ([`chain`]); `head` its last link signed by the
//! node's key ([`head`]).

pub mod boot;
pub mod chain;
pub mod head;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use self::head::Head;
use crate::command::Command;
use crate::dev::{self, Aux, Ctx, Device, Entry, Info, ReadOutcome, Table};
use crate::error::Error;
use crate::file::File;
use crate::root;

/// The proof device's number in [`crate::devices::DEVICES`].
pub const DEV: u8 = 2;
const K_TOP: u8 = 0;
const K_BOOT: u8 = 1;
const K_CHAIN: u8 = 2;
const K_HEAD: u8 = 3;

/// `/proof` itself.
pub const TOP: File = File::new(DEV, K_TOP, 0);
const BOOT: File = File::new(DEV, K_BOOT, 0);
const CHAIN: File = File::new(DEV, K_CHAIN, 0);
const HEAD: File = File::new(DEV, K_HEAD, 0);

/// The files of `/proof`, in listing order.
const FILES: Table = Table(&[
    Entry::file("boot", K_BOOT, 0o444),
    Entry::file("chain", K_CHAIN, 0o444),
    Entry::file("head", K_HEAD, 0o444),
]);

/// What `/proof/boot` holds on a node that has no boot ledger.
pub const NO_BOOT_PROOF: &str =
    "# no boot proof: this node is a process that its host's kernel started\n";

/// The `/proof` device.
pub struct ProofDev;

impl Device for ProofDev {
    fn rendered(&self, node: File) -> bool {
        node.kind == K_HEAD
    }

    fn top(&self) -> Option<(&'static str, File)> {
        Some(("proof", TOP))
    }

    fn info<'a>(&self, cx: &Ctx<'a>, node: File) -> Option<Info<'a>> {
        let mtime = cx.unix_ms / 1000;
        match node {
            TOP => Some(Info {
                name: "proof",
                dir: true,
                perm: 0o555,
                length: 0,
                version: 0,
                mtime,
            }),
            BOOT => Some(Info {
                name: "boot",
                dir: false,
                perm: 0o444,
                length: boot_text(cx).len() as u64,
                version: 0,
                mtime,
            }),
            // Rendered on read, like /cap's files: the length is 0 (read
            // to the end), the version moves with the chain.
            CHAIN | HEAD => Some(Info {
                name: if node == CHAIN { "chain" } else { "head" },
                dir: false,
                perm: 0o444,
                length: 0,
                version: cx.state.chain.head().0 as u32,
                mtime,
            }),
            _ => None,
        }
    }

    fn parent(&self, node: File) -> File {
        if node == TOP { root::ROOT } else { TOP }
    }

    fn lookup(&self, _cx: &Ctx<'_>, dir: File, name: &str) -> Option<File> {
        if dir != TOP {
            return None;
        }
        FILES.lookup(DEV, 0, name)
    }

    fn list(&self, _cx: &Ctx<'_>, dir: File, out: &mut Vec<File>) {
        if dir == TOP {
            FILES.list(DEV, 0, out);
        }
    }

    fn open(&self, _cx: &Ctx<'_>, node: File, _read: bool, write: bool) -> Result<Aux, Error> {
        match node {
            TOP if write => Err(Error::IsDir),
            BOOT if write => Err(Error::Perm(String::from(
                "/proof/boot is read-only: the kernel wrote it as it booted",
            ))),
            CHAIN | HEAD if write => Err(Error::Perm(String::from(
                "/proof/chain and /proof/head are read-only: the node computes them as entries commit",
            ))),
            _ => Ok(Aux::None),
        }
    }

    fn read(
        &self,
        cx: &Ctx<'_>,
        node: File,
        aux: &mut Aux,
        offset: u64,
        count: u32,
        out: &mut Vec<u8>,
    ) -> Result<ReadOutcome, Error> {
        // Each read at offset 0 renders afresh: O(size of the whole log)
        // for the chain.
        let render = || match node {
            BOOT => Some(String::from(boot_text(cx))),
            CHAIN => Some(cx.state.chain.render()),
            HEAD => Some(Head::sign(&cx.state.chain, cx.key).render()),
            _ => None,
        };
        if !matches!(node, BOOT | CHAIN | HEAD) {
            return Err(Error::IsDir);
        }
        Ok(dev::read_text(aux, offset, count, out, || {
            render().unwrap_or_default()
        }))
    }

    fn write(&self, _cx: &Ctx<'_>, _node: File, _data: &[u8]) -> Result<Command, Error> {
        Err(Error::Perm(String::from(
            "/proof is read-only: proofs are made by the node, not written to it",
        )))
    }

    fn create(
        &self,
        _cx: &Ctx<'_>,
        _dir: File,
        name: &str,
        _is_dir: bool,
    ) -> Result<Command, Error> {
        Err(dev::cannot_create(
            name,
            "/proof",
            "it holds only the node's own proofs",
        ))
    }

    fn remove(&self, _cx: &Ctx<'_>, node: File) -> Result<Option<Command>, Error> {
        let name = FILES.kind(node.kind).map_or("proof", |f| f.name);
        Err(Error::Perm(format!(
            "cannot remove /proof/{name}: a proof is part of the node"
        )))
    }
}

fn boot_text<'a>(cx: &Ctx<'a>) -> &'a str {
    if cx.boot_proof.is_empty() {
        NO_BOOT_PROOF
    } else {
        cx.boot_proof
    }
}

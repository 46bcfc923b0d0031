//! The manual pages render, and list every ctl verb the code accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

use cell0_tests::require_tool;

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("man")
}

#[test]
fn every_page_renders_without_warnings() {
    require_tool("groff", "apt-get install groff-base");
    let mut pages = 0;
    for section in std::fs::read_dir(man_dir()).expect("man/ exists") {
        for page in std::fs::read_dir(section.unwrap().path()).unwrap() {
            let page = page.unwrap().path();
            let out = Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(&page)
                .output()
                .unwrap();
            let warnings = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && warnings.is_empty(),
                "{}: {warnings}",
                page.display()
            );
            pages += 1;
        }
    }
    for required in [
        "man1/cell0.1",
        "man4/cellfs.4",
        "man3/cap.3",
        "man3/chan.3",
        "man3/proof.3",
        "man3/swarm.3",
        "man8/kernel.8",
    ] {
        assert!(
            man_dir().join(required).exists(),
            "man/{required} is missing"
        );
    }
    assert!(pages >= 5);
}

#[test]
fn man_l_renders_every_page() {
    require_tool("man", "apt-get install man-db");
    for (page, word) in [
        ("man3/cap.3", "attenuate"),
        ("man3/chan.3", "chan"),
        ("man3/proof.3", "boot ledger"),
        ("man8/kernel.8", "PVH"),
        ("man1/cell0.1", "verify-boot"),
    ] {
        let out = Command::new("man")
            .arg("-l")
            .arg(man_dir().join(page))
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert!(out.status.success(), "man -l {page}");
        // man may hyphenate or embolden; look for the word as text.
        let text = String::from_utf8_lossy(&out.stdout).replace("\u{2010}", "-");
        assert!(text.contains(word), "man -l {page} lacks {word:?}:\n{text}");
    }
}

#[test]
fn the_boot_pages_cover_the_flags_and_stages() {
    let cell0 = page("man1/cell0.1");
    for flag in ["listen", "mount", "kernel", "mem", "console", "timeout"] {
        assert!(
            cell0.contains(&format!("\\-\\-{flag}")),
            "cell0(1) does not document boot --{flag}"
        );
    }
    assert!(cell0.contains("cell0 proof verify\\-boot"));
    assert!(cell0.contains("cell0 boot"));
    let proof = page("man3/proof.3");
    for stage in cellfs::proof::boot::STAGES {
        let marker = format!("#E{} {}", stage.number(), stage.name());
        assert!(
            proof.contains(&marker),
            "proof(3) does not describe {marker}"
        );
    }
    let kernel = page("man8/kernel.8");
    for word in [
        "cell0.exit",
        "cell0.test=fault",
        "10.0.2.15/24",
        "564",
        "PVH",
    ] {
        assert!(kernel.contains(word), "kernel(8) does not mention {word}");
    }
}

fn page(path: &str) -> String {
    std::fs::read_to_string(man_dir().join(path)).unwrap()
}

#[test]
fn cap_page_covers_the_format_the_tree_and_the_verbs() {
    let cap = page("man3/cap.3");
    for needle in [
        "next_key",
        "proof",
        "c0.",
        "/cap/ctl",
        "/cap/revoked",
        "/cap/key",
        "mint scope=",
        "revoke",
        "Tauth",
        "token=c0.",
        "EACCES",
        "node.key",
        "owner.token",
        "owner\\-token",
        "cell0 cap attenuate",
        "\\-\\-token agent.token",
    ] {
        assert!(cap.contains(needle), "cap(3) does not mention {needle}");
    }
    let cell0 = page("man1/cell0.1");
    for needle in [
        "\\-\\-token",
        "\\-\\-insecure",
        "cell0 cap mint",
        "cell0 cap inspect",
        "cell0 cap revoke",
        "owner.token",
    ] {
        assert!(cell0.contains(needle), "cell0(1) does not mention {needle}");
    }
    assert!(page("man8/kernel.8").contains("owner\\-token"));
}

#[test]
fn verb_tables_match_the_manuals() {
    let chan = page("man3/chan.3");
    for v in cellfs::chan::CTL_VERBS {
        assert!(
            chan.contains(&format!(".B {}", v.name))
                || chan.contains(&format!("\\fB{}\\fR", v.name)),
            "chan(3) does not document ctl verb {}",
            v.name
        );
    }
    let raft = page("man3/raft.3");
    for v in cellfs::raft::device::CTL_VERBS {
        assert!(
            raft.contains(&format!(".BI \"{} ", v.name))
                || raft.contains(&format!(".B {}\n", v.name)),
            "raft(3) does not document ctl verb {}",
            v.name
        );
    }
    let swarm = page("man3/swarm.3");
    for v in cellfs::swarm::ctl::CTL_VERBS
        .iter()
        .chain(cellfs::swarm::ctl::NODE_VERBS)
    {
        assert!(
            swarm.contains(&format!(".BI \"{} ", v.name))
                || swarm.contains(&format!(".B {}\n", v.name)),
            "swarm(3) does not document ctl verb {}",
            v.name
        );
    }
    let cellfs_page = page("man4/cellfs.4");
    for v in cellfs::root::CTL_VERBS {
        assert!(
            cellfs_page.contains(v.name),
            "cellfs(4) does not document /ctl verb {}",
            v.name
        );
    }
}

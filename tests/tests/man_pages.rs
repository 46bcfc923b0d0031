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
    for required in ["man1/cell0.1", "man4/cellfs.4", "man3/chan.3"] {
        assert!(
            man_dir().join(required).exists(),
            "man/{required} is missing"
        );
    }
    assert!(pages >= 3);
}

#[test]
fn man_l_renders_chan3() {
    require_tool("man", "apt-get install man-db");
    let out = Command::new("man")
        .arg("-l")
        .arg(man_dir().join("man3/chan.3"))
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("chan"));
}

fn page(path: &str) -> String {
    std::fs::read_to_string(man_dir().join(path)).unwrap()
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
    let cellfs_page = page("man4/cellfs.4");
    for v in cellfs::root::CTL_VERBS {
        assert!(
            cellfs_page.contains(v.name),
            "cellfs(4) does not document /ctl verb {}",
            v.name
        );
    }
}

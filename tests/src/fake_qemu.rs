//! A stand-in for `qemu-system-x86_64`, to test `cell0 boot` without the
//! kernel: a script, first on `PATH`, that prints a valid boot ledger (made
//! with [`cellfs::proof::boot::Ledger`]) on its console and then becomes a
//! hosted node (`cell0 serve`) listening on the forwarded address, so
//! everything `cell0 boot` does after `#E10` runs against a real server.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use cellfs::proof::boot::{Ledger, STAGES};
use tempfile::TempDir;

use crate::cell0_bin;

/// What the stand-in does after its console lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// Print the whole ledger, then serve the tree on the forwarded port.
    Serve,
    /// Print `#E0` … `#E3` and a panic message, then exit with status 3.
    PanicEarly,
    /// Print `#E0`, then hang (a kernel that never serves).
    Hang,
}

/// A directory holding the stand-in `qemu-system-x86_64`.
pub struct FakeQemu {
    dir: TempDir,
    /// The ledger it prints, for comparing heads.
    pub ledger: Ledger,
}

/// Make `data` a node data directory with a fixed key, and return the
/// owner token that key mints (as `cell0 serve` will write it).
fn owner_token(data: &Path) -> String {
    use cellfs::cap::{Claims, NodeKey, Rights};
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(data)
        .unwrap();
    let seed = [0x5a; 32];
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(data.join("node.key"))
        .unwrap();
    writeln!(f, "{}", cellfs::cap::hex(&seed)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    NodeKey::from_seed(&seed)
        .mint(Claims {
            id: 0,
            holder: "owner".into(),
            scope: "/".into(),
            rights: Rights::ALL,
            not_before: 0,
            expires: now + 3600,
        })
        .unwrap()
        .to_text()
}

impl FakeQemu {
    /// Make a stand-in that behaves as `script` says.
    pub fn new(script: Script) -> FakeQemu {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ledger = Ledger::new();
        let facts = [
            "vendor=GenuineFake family=6",
            "usable=127MiB regions=3",
            "image=00ff",
            "mapped=4GiB pages2m=2048",
            "idt=256",
            "heap=4MiB",
            "hz=100 entropy=rdrand",
            "functions=6",
            "mac=52:54:00:12:34:56",
            "ip=10.0.2.15/24 gw=10.0.2.2",
            "port=564",
        ];
        for (stage, facts) in STAGES.iter().zip(facts) {
            ledger.record(*stage, facts).expect("a valid ledger");
        }
        let console = dir.path().join("console.txt");
        let data = dir.path().join("data");
        // The node behind the fake has a known key, so the fake can print
        // its owner token on the console as the kernel does.
        let owner = owner_token(&data);
        let text: String = match script {
            Script::Serve => format!(
                "SeaBIOS (fake)\r\n{}owner-token {owner}\r\n",
                ledger.text().replace('\n', "\r\n")
            ),
            Script::PanicEarly | Script::Hang => {
                let keep = if script == Script::Hang { 1 } else { 4 };
                let mut t: String = ledger
                    .text()
                    .lines()
                    .take(keep)
                    .map(|l| format!("{l}\r\n"))
                    .collect();
                if script == Script::PanicEarly {
                    t.push_str("panic: a stand-in for a kernel that failed\r\n");
                }
                t
            }
        };
        std::fs::write(&console, text).unwrap();
        let tail = match script {
            Script::Serve => format!(
                "exec '{}' serve --listen \"$fwd\" --data '{}' >/dev/null 2>&1",
                cell0_bin().display(),
                data.display()
            ),
            Script::PanicEarly => "exit 3".to_string(),
            Script::Hang => "exec sleep 600".to_string(),
        };
        let script_text = format!(
            "#!/bin/bash\n\
             # A stand-in for qemu-system-x86_64 (see tests/src/fake_qemu.rs).\n\
             for a in \"$@\"; do case \"$a\" in *hostfwd=tcp:*) fwd=${{a#*hostfwd=tcp:}}; fwd=${{fwd%-:564}};; esac; done\n\
             cat '{}'\n\
             {tail}\n",
            console.display()
        );
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let qemu = bin.join("qemu-system-x86_64");
        std::fs::write(&qemu, script_text).unwrap();
        std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("kernel.img"), b"not a kernel").unwrap();
        FakeQemu { dir, ledger }
    }

    /// `PATH` with the stand-in first.
    pub fn path_env(&self) -> OsString {
        let mut paths = vec![self.dir.path().join("bin")];
        if let Some(p) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&p));
        }
        std::env::join_paths(paths).unwrap()
    }

    /// A file to pass as `--kernel` (the stand-in does not read it).
    pub fn image(&self) -> PathBuf {
        self.dir.path().join("kernel.img")
    }

    /// The directory the stand-in lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

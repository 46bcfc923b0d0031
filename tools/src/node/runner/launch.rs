//! What the runner starts for an agent: its capability, minted from the
//! runner's own, and the supervisor's [`Spec`] that runs its program
//! behind `cell0 agent-shim` in its sandbox, with the descriptors each
//! run gets (see `agentfs`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cell0_agents::{Fds, Limits, Restart, RestartPolicy, Spec};
use cellfs::agent::{self, RunSpec};
use cellfs::cap::{Right, Rights, Token};

/// Where an agent's process finds the tree mounted.
pub const MOUNT: &str = "/cell0";

/// What every launch of this runner shares.
pub struct Launcher {
    /// The node's 9P address, as the agents dial it.
    pub addr: String,
    /// The runner's capability, which agents' capabilities narrow.
    pub token: Token,
    /// The `cell0` binary (for `agent-shim`).
    pub shim: PathBuf,
    /// What agents must not see (see `cell0 agent-shim --hide`): the
    /// node's data directory (its key, the owner's token), the runner's
    /// own token.
    pub hide: Vec<PathBuf>,
    /// How agents run here: sandboxed, or (only when the node's owner
    /// said so) unconfined.
    pub confinement: Confinement,
    /// The sessions its agents' mounts are served over.
    pub sessions: super::agentfs::Sessions,
}

/// How the runner runs agents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Confinement {
    /// In a sandbox (see `cell0 agent-shim` and agent(3)).
    Sandboxed,
    /// This host cannot sandbox them (the reason), and the runner was
    /// told to run them anyway: the program runs directly, as the
    /// runner's user, with the host's file system and network, its
    /// capability on a descriptor.
    Unconfined(String),
    /// This host cannot sandbox them (the reason), and the runner was
    /// not told to run them unconfined: it refuses.
    Refused(String),
}

/// The words of `report running sandbox=` and `/agent/NAME/status` for
/// what a sandboxed run has, given the supervisor's isolation words.
pub fn sandbox_words(iso: &cell0_agents::Isolation) -> String {
    let mut words = vec![iso.namespace_words()];
    words.push("seccomp,nonewprivs,nocaps,root".to_string());
    if iso.cgroup {
        words.push("cgroup".to_string());
    }
    words.join(",")
}

impl Launcher {
    /// Agent `name`'s capability: holder `agent/NAME`, scope `/` (or the
    /// runner's, if narrower), the rights of its intent together, the
    /// runner's window. The node holds every request made with it to
    /// the agent's intent (see agent(3)).
    pub fn mint(&self, name: &str, spec: &RunSpec) -> Result<Token, String> {
        let mine = self.token.claims();
        let rights = spec
            .intent
            .iter()
            .fold(Rights::NONE, |all, reach| all.union(reach.rights));
        // An agent that means to touch nothing still needs to attach.
        let rights = if rights == Rights::NONE {
            Rights::from(Right::Read)
        } else {
            rights
        };
        self.token
            .attenuate(
                &format!("{}{name}", agent::HOLDER),
                &mine.scope,
                rights,
                mine.not_before,
                mine.expires,
            )
            .map_err(|e| {
                format!(
                    "cannot mint agent {name}'s capability from the runner's ({}): {e}",
                    mine.holder
                )
            })
    }

    /// The supervisor's spec for agent `name`: `cell0 agent-shim -- EXEC…`
    /// with the agent's environment, its capability and where the node is.
    /// Refused with the reason a runner reports (`report failed`) when
    /// the agent cannot run here.
    pub fn spec(&self, name: &str, spec: &RunSpec) -> Result<Spec, String> {
        let Some(exec) = &spec.exec else {
            return Err("no program: write 'exec PATH [ARG...]' to its ctl".to_string());
        };
        check_program(Path::new(&exec.path))?;
        if let Confinement::Refused(why) = &self.confinement {
            return Err(format!(
                "this host cannot sandbox agents ({why}); the node's owner may run them unconfined with `cell0 serve --unconfined-agents` (or `cell0 runner --unconfined-agents`), see agent(3)"
            ));
        }
        let token = self.mint(name, spec)?.to_text();
        let sandboxed = self.confinement == Confinement::Sandboxed;
        let mut s = if sandboxed {
            let mut args = vec!["agent-shim".to_string()];
            for h in &self.hide {
                args.push("--hide".to_string());
                args.push(h.display().to_string());
            }
            args.push("--".to_string());
            args.push(exec.path.clone());
            args.extend(exec.args.iter().cloned());
            Spec::new(&self.shim).args(args)
        } else {
            Spec::new(&exec.path).args(exec.args.iter().cloned())
        };
        // A sandbox's root is read-only but for /tmp.
        if sandboxed {
            s = s.env("HOME", "/tmp");
        }
        for (k, v) in &spec.env {
            s = s.env(k.clone(), v.clone());
        }
        let token_file = if sandboxed {
            crate::node::shim::TOKEN_FILE.to_string()
        } else {
            // The program's own descriptor: opening it gives the memfd
            // afresh, from its start.
            "/proc/self/fd/3".to_string()
        };
        s = s
            .env("CELL0_ADDR", self.addr.clone())
            .env("CELL0_TOKEN_FILE", token_file)
            .env("CELL0_MOUNT", if sandboxed { MOUNT } else { "" })
            .env("CELL0_NET", if spec.network { "1" } else { "0" })
            .env("CELL0_AGENT", name);
        let (addr, program) = (self.addr.clone(), PathBuf::from(&exec.path));
        let sessions = self.sessions.clone();
        if sandboxed {
            s.devices = vec![PathBuf::from(crate::node::shim::FUSE_DEVICE)];
        }
        s.fds = Some(if sandboxed {
            Fds::new(move |agent| {
                super::agentfs::descriptors(agent, &addr, &token, &program, &sessions)
            })
        } else {
            Fds::new(move |_| Ok(vec![super::agentfs::memfd(&token)?]))
        });
        s.limits = Limits {
            cpu_percent: spec.limits.cpu,
            memory_bytes: spec.limits.mem,
            pids: spec.limits.pids,
        };
        s.restart = RestartPolicy {
            restart: match spec.policy.restart {
                agent::Restart::Always => Restart::Always,
                agent::Restart::OnFailure => Restart::OnFailure,
                agent::Restart::Never => Restart::Never,
            },
            max: spec.policy.max.max(1),
            window: Duration::from_secs(spec.policy.window.max(1)),
        };
        // The sandbox's network namespace holds only loopback unless the
        // intent allows the network; the mount needs none (the runner
        // serves it). Unconfined, the program has the host's network
        // whatever its intent (agent(3) says so).
        s.network = spec.network;
        s.check().map_err(|e| e.to_string())?;
        Ok(s)
    }
}

/// Refuse a program that is missing, not a file or not executable, with
/// the reason a user can act on.
fn check_program(path: &Path) -> Result<(), String> {
    let shown = path.display();
    if !path.is_absolute() {
        return Err(format!("{shown}: the program must be an absolute path"));
    }
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{shown}: no such file on this runner's host"),
        _ => format!("{shown}: {e}"),
    })?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a file"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{shown}: not executable (chmod +x it)"));
    }
    Ok(())
}

//! What isolation a host gives its agents, found once when the runner
//! starts, and what each run got: an [`Isolation`] value a caller can
//! show.
//!
//! Namespaces are tried by making one throwaway process with them (see
//! [`crate::child`]); when that fails (not root, no user namespaces, a
//! seccomp filter: usually EPERM) agents run without them. Cgroups are
//! found as [`crate::cgroup`] says. Either way, the agent runs, and the
//! [`Isolation`] says what it lacks.

use std::fmt;

use crate::cgroup::{Applied, Cgroups};
use crate::child::{self, Namespaces};
use crate::spec::Spec;

/// The isolation an agent gets: on a host, what it can get; on a run,
/// what it got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Isolation {
    /// A pid namespace of its own: it is pid 1 there, so when it ends
    /// (or the runner does) every process it started is killed.
    pub pid_namespace: bool,
    /// A mount namespace of its own, with its own `/proc`.
    pub mount_namespace: bool,
    /// A network namespace of its own (no network but a loopback device).
    pub network_namespace: bool,
    /// A cgroup of its own: every process it starts is in it, and killed
    /// with it, even one that left its process group.
    pub cgroup: bool,
    /// Its memory limit is enforced.
    pub memory_limit: bool,
    /// Its pids limit is enforced.
    pub pids_limit: bool,
    /// Its CPU limit is enforced.
    pub cpu_limit: bool,
    /// What is missing and why, one sentence each.
    pub notes: Vec<String>,
}

impl Isolation {
    /// Whether no process the agent starts can outlive it, nor the
    /// runner: true with a pid namespace (the kernel kills the whole
    /// namespace when its pid 1 ends, and pid 1 dies with the runner).
    /// A cgroup alone does not make this true: after the runner dies
    /// nobody kills the cgroup (the next runner's start does).
    pub fn contained(&self) -> bool {
        self.pid_namespace
    }
}

impl fmt::Display for Isolation {
    /// One line of `key=value` words, such as
    /// `namespaces=pid,mount,net cgroup=yes limits=memory,pids contained=yes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: &[(bool, &str)]| {
            let words: Vec<&str> = items
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, w)| *w)
                .collect();
            if words.is_empty() {
                "none".to_string()
            } else {
                words.join(",")
            }
        };
        let yes = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "namespaces={} cgroup={} limits={} contained={}",
            list(&[
                (self.pid_namespace, "pid"),
                (self.mount_namespace, "mount"),
                (self.network_namespace, "net"),
            ]),
            yes(self.cgroup),
            list(&[
                (self.memory_limit, "memory"),
                (self.pids_limit, "pids"),
                (self.cpu_limit, "cpu"),
            ]),
            yes(self.contained()),
        )
    }
}

/// What this host offers, found once.
#[derive(Debug)]
pub(crate) struct Host {
    /// Agents get pid, mount and (unless allowed the network) network
    /// namespaces.
    pub(crate) namespaces: bool,
    /// Where runs get their cgroups.
    pub(crate) cgroups: Cgroups,
    /// Why there are no namespaces.
    namespace_note: Option<String>,
}

impl Host {
    /// Find out: `namespaces` and `cgroups` say whether to try them at
    /// all; `parent` is the cgroup parent's name.
    pub(crate) fn discover(namespaces: bool, cgroups: bool, parent: &str) -> Host {
        let (namespaces, namespace_note) = if !namespaces {
            (
                false,
                Some("namespaces turned off in the runner's options".to_string()),
            )
        } else {
            match child::probe(Namespaces {
                pid_mount: true,
                net: true,
            }) {
                Ok(()) => (true, None),
                Err(e) => (false, Some(format!("no namespaces here ({e})"))),
            }
        };
        let cgroups = if cgroups {
            Cgroups::discover(parent)
        } else {
            Cgroups::none("turned off in the runner's options")
        };
        Host {
            namespaces,
            cgroups,
            namespace_note,
        }
    }

    /// What any agent can get here (all limits counted as set, the
    /// network as not allowed).
    pub(crate) fn isolation(&self) -> Isolation {
        let can = self.cgroups.enforceable();
        let mut iso = self.base(false, can);
        iso.notes.extend(self.cgroups.notes.iter().cloned());
        iso
    }

    /// What a run of `spec` gets, given the limits its cgroup holds and
    /// what went wrong making it.
    pub(crate) fn run_isolation(
        &self,
        spec: &Spec,
        cgroup: bool,
        applied: Applied,
        cgroup_notes: Vec<String>,
    ) -> Isolation {
        let mut iso = self.base(spec.network, applied);
        iso.cgroup = cgroup;
        iso.notes.extend(cgroup_notes);
        iso
    }

    fn base(&self, network: bool, limits: Applied) -> Isolation {
        let cgroup = self.cgroups.available();
        let mut notes = Vec::new();
        if let Some(n) = &self.namespace_note {
            notes.push(n.clone());
            notes.push(if cgroup {
                "processes it starts are killed with it through its cgroup, but outlive a runner that dies"
                    .to_string()
            } else {
                "processes it starts that leave its process group outlive it, and every one outlives a runner that dies"
                    .to_string()
            });
            if !network {
                notes.push(
                    "its network is the host's: there is no namespace to cut it off".to_string(),
                );
            }
        }
        Isolation {
            pid_namespace: self.namespaces,
            mount_namespace: self.namespaces,
            network_namespace: self.namespaces && !network,
            cgroup,
            memory_limit: limits.memory,
            pids_limit: limits.pids,
            cpu_limit: limits.cpu,
            notes,
        }
    }

    /// The namespaces a run of `spec` gets.
    pub(crate) fn namespaces_for(&self, spec: &Spec) -> Namespaces {
        Namespaces {
            pid_mount: self.namespaces,
            net: self.namespaces && !spec.network,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_reads_as_one_line_of_words() {
        let iso = Isolation {
            pid_namespace: true,
            mount_namespace: true,
            network_namespace: false,
            cgroup: true,
            memory_limit: true,
            pids_limit: true,
            ..Isolation::default()
        };
        assert_eq!(
            iso.to_string(),
            "namespaces=pid,mount cgroup=yes limits=memory,pids contained=yes"
        );
        assert_eq!(
            Isolation::default().to_string(),
            "namespaces=none cgroup=no limits=none contained=no"
        );
    }
}

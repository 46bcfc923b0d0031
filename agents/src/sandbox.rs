//! What isolation a host gives its agents, found once when the runner
//! starts, and what each run got: an [`Isolation`] value a caller can
//! show.
//!
//! Namespaces are tried by making one throwaway process with them (see
//! [`crate::child`]): a user namespace mapping its root to an
//! unprivileged id of the host, with pid, mount, UTS, IPC, cgroup and
//! network namespaces owned by it. When that fails (no user namespaces
//! in this kernel, a seccomp filter: usually EPERM or EINVAL) agents can
//! only run without them, and the [`Isolation`] says what they lack; a
//! caller that must not run agents so (the runner, unless told to) looks
//! at [`Isolation::confined`] first. Cgroups are found as
//! [`crate::cgroup`] says.
//!
//! Each run gets its own host uid and gid, [`Options::uid_base`] plus a
//! slot number that is free while the run lives: two agents never share
//! an id, so nothing one leaves behind is the other's. A runner that is
//! not root can map only its own id (that is all the kernel allows it),
//! which every run then shares.
//!
//! [`Options::uid_base`]: crate::Options::uid_base

use std::fmt;

use crate::cgroup::{Applied, Cgroups};
use crate::child::{self, IdMap, Namespaces};
use crate::spec::Spec;

/// The isolation an agent gets: on a host, what it can get; on a run,
/// what it got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Isolation {
    /// A user namespace of its own, whose root is an unprivileged id of
    /// the host ([`Isolation::uid`]); its UTS, IPC and cgroup namespaces
    /// come with it.
    pub user_namespace: bool,
    /// The host uid its root is (with a user namespace).
    pub uid: Option<u32>,
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

    /// Whether it is confined as an agent must be: no privilege on the
    /// host (a user namespace), its processes contained (pid), its own
    /// mounts (mount); the network namespace depends on what it may use.
    pub fn confined(&self) -> bool {
        self.user_namespace && self.pid_namespace && self.mount_namespace
    }

    /// Its namespaces as words: `user,pid,mount,uts,ipc,cgroup,net`
    /// (those it has), or `none`.
    pub fn namespace_words(&self) -> String {
        let u = self.user_namespace;
        words(&[
            (u, "user"),
            (self.pid_namespace, "pid"),
            (self.mount_namespace, "mount"),
            (u, "uts"),
            (u, "ipc"),
            (u, "cgroupns"),
            (self.network_namespace, "net"),
        ])
    }
}

/// The words of `items` that are on, comma-separated, or `none`.
fn words(items: &[(bool, &str)]) -> String {
    let on: Vec<&str> = items
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, w)| *w)
        .collect();
    if on.is_empty() {
        "none".to_string()
    } else {
        on.join(",")
    }
}

impl fmt::Display for Isolation {
    /// One line of `key=value` words, such as `namespaces=user,pid,mount,
    /// uts,ipc,cgroupns,net uid=2000000000 cgroup=yes limits=memory,pids
    /// contained=yes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        write!(f, "namespaces={}", self.namespace_words())?;
        if let Some(uid) = self.uid {
            write!(f, " uid={uid}")?;
        }
        write!(
            f,
            " cgroup={} limits={} contained={}",
            yes(self.cgroup),
            words(&[
                (self.memory_limit, "memory"),
                (self.pids_limit, "pids"),
                (self.cpu_limit, "cpu"),
            ]),
            yes(self.contained()),
        )
    }
}

/// How many runs may hold a host id at once.
const SLOTS: u32 = 1 << 20;

/// The host ids runs' user namespaces map to: one per live run.
#[derive(Debug)]
pub(crate) struct Ids {
    /// The first id (a root runner), or the runner's own (otherwise).
    base: u32,
    /// Whether each run gets an id of its own (only root may map others).
    own: bool,
    /// The slots in use.
    used: std::collections::BTreeSet<u32>,
}

impl Ids {
    fn new(base: u32) -> Ids {
        // SAFETY: geteuid takes nothing and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if euid == 0 {
            Ids {
                base,
                own: true,
                used: Default::default(),
            }
        } else {
            Ids {
                base: euid,
                own: false,
                used: Default::default(),
            }
        }
    }

    /// An id for a new run (its slot, to give back with [`Ids::free`]).
    pub(crate) fn take(&mut self) -> Option<(IdMap, u32)> {
        if !self.own {
            // SAFETY: getegid takes nothing and cannot fail.
            let gid = unsafe { libc::getegid() };
            return Some((
                IdMap {
                    uid: self.base,
                    gid,
                },
                u32::MAX,
            ));
        }
        let slot = (0..SLOTS).find(|s| !self.used.contains(s))?;
        self.used.insert(slot);
        let id = self.base.checked_add(slot)?;
        Some((IdMap { uid: id, gid: id }, slot))
    }

    /// Give back a run's slot.
    pub(crate) fn free(&mut self, slot: u32) {
        self.used.remove(&slot);
    }
}

/// What this host offers, found once.
#[derive(Debug)]
pub(crate) struct Host {
    /// Agents get user, pid, mount, UTS, IPC, cgroup and (unless allowed
    /// the network) network namespaces.
    pub(crate) namespaces: bool,
    /// Where runs get their cgroups.
    pub(crate) cgroups: Cgroups,
    /// The host ids of runs' user namespaces.
    pub(crate) ids: Ids,
    /// Why there are no namespaces.
    namespace_note: Option<String>,
}

impl Host {
    /// Find out: `namespaces` and `cgroups` say whether to try them at
    /// all; `parent` is the cgroup parent's name; runs' host ids start at
    /// `uid_base`.
    pub(crate) fn discover(namespaces: bool, cgroups: bool, parent: &str, uid_base: u32) -> Host {
        let mut ids = Ids::new(uid_base);
        let (namespaces, namespace_note) = if !namespaces {
            (
                false,
                Some("namespaces turned off in the runner's options".to_string()),
            )
        } else {
            let probe = ids.take().map(|(map, slot)| {
                let r = child::probe(Namespaces {
                    pid_mount: true,
                    net: true,
                    user: Some(map),
                });
                ids.free(slot);
                r
            });
            match probe {
                Some(Ok(())) => (true, None),
                Some(Err(e)) => (
                    false,
                    Some(format!(
                        "no namespaces here: a user namespace with its own pid, mount, UTS, IPC and network ones could not be made ({e})"
                    )),
                ),
                None => (false, Some("no host id left for agents".to_string())),
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
            ids,
            namespace_note,
        }
    }

    /// What any agent can get here (all limits counted as set, the
    /// network as not allowed).
    pub(crate) fn isolation(&self) -> Isolation {
        let can = self.cgroups.enforceable();
        let mut iso = self.base(false, can, None);
        iso.notes.extend(self.cgroups.notes.iter().cloned());
        iso
    }

    /// What a run of `spec` gets, given the limits its cgroup holds and
    /// what went wrong making it.
    pub(crate) fn run_isolation(
        &self,
        spec: &Spec,
        namespaces: Namespaces,
        cgroup: bool,
        applied: Applied,
        cgroup_notes: Vec<String>,
    ) -> Isolation {
        let mut iso = self.base(spec.network, applied, namespaces.user.map(|m| m.uid));
        iso.cgroup = cgroup;
        iso.notes.extend(cgroup_notes);
        iso
    }

    fn base(&self, network: bool, limits: Applied, uid: Option<u32>) -> Isolation {
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
            user_namespace: self.namespaces,
            uid,
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

    /// The namespaces a run of `spec` gets, its user namespace's root
    /// being `ids`.
    pub(crate) fn namespaces_for(&self, spec: &Spec, ids: Option<IdMap>) -> Namespaces {
        Namespaces {
            pid_mount: self.namespaces,
            net: self.namespaces && !spec.network,
            user: ids.filter(|_| self.namespaces),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_per_live_run_when_root() {
        let mut ids = Ids {
            base: 100,
            own: true,
            used: Default::default(),
        };
        let (a, sa) = ids.take().unwrap();
        let (b, sb) = ids.take().unwrap();
        assert_eq!((a.uid, a.gid, b.uid), (100, 100, 101));
        ids.free(sa);
        assert_eq!(ids.take().unwrap().0.uid, 100);
        ids.free(sb);
        assert_eq!(ids.take().unwrap().0.uid, 101);
    }

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
        assert!(!iso.confined());
        let boxed = Isolation {
            user_namespace: true,
            uid: Some(2_000_000_007),
            network_namespace: true,
            ..iso
        };
        assert!(boxed.confined());
        assert_eq!(
            boxed.to_string(),
            "namespaces=user,pid,mount,uts,ipc,cgroupns,net uid=2000000007 cgroup=yes limits=memory,pids contained=yes"
        );
        assert_eq!(
            Isolation::default().to_string(),
            "namespaces=none cgroup=no limits=none contained=no"
        );
    }
}

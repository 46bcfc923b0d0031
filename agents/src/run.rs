//! One run of an agent's process, and stopping it: TERM to every process
//! of the run, TERM again to those that appear while it stops, KILL at the
//! end of the grace period (or at once when the agent cannot hear TERM).

use std::time::Instant;

use crate::cgroup::Cgroup;
use crate::child::Child;
use crate::logbuf::LogBuf;
use crate::process;

/// One agent's process.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) child: Child,
    pub(crate) started: Instant,
    pub(crate) cgroup: Option<Cgroup>,
    /// Its stderr, for its exit record.
    pub(crate) stderr: LogBuf,
    /// TERM was sent; KILL goes at this time.
    pub(crate) kill_at: Option<Instant>,
    /// KILL was sent.
    pub(crate) killed: bool,
    /// It is pid 1 of a pid namespace.
    pub(crate) pid_ns: bool,
    /// The processes of its cgroup that were sent TERM.
    pub(crate) termed: Vec<i32>,
    /// Its slot among the host ids of user namespaces, if it holds one.
    pub(crate) id_slot: Option<u32>,
    /// TERM was sent, and it is pid 1 of its namespace and neither
    /// handles nor blocks TERM, so the TERM never reached it.
    pub(crate) deaf: bool,
}

impl Run {
    pub(crate) fn pid(&self) -> u32 {
        self.child.pid as u32
    }

    /// TERM to every process: the cgroup's, or the process group's.
    pub(crate) fn terminate(&mut self) {
        match &self.cgroup {
            Some(cg) => {
                for pid in cg.pids() {
                    process::signal_pid(pid, libc::SIGTERM);
                    self.termed.push(pid);
                }
            }
            None => process::signal_group(self.child.pid, libc::SIGTERM),
        }
        self.deaf = self.pid_ns && process::deaf_to(self.child.pid, libc::SIGTERM);
    }

    /// While stopping, TERM (once) to each process that appeared in the
    /// cgroup since: what the agent starts while it is being stopped is
    /// told to end too, and not left for the final KILL.
    pub(crate) fn terminate_newcomers(&mut self) {
        let Some(cg) = &self.cgroup else { return };
        for pid in cg.pids() {
            if !self.termed.contains(&pid) {
                process::signal_pid(pid, libc::SIGTERM);
                self.termed.push(pid);
            }
        }
    }

    /// Whether the agent is deaf to the TERM sent and is the last of its
    /// processes: TERM's default action would have ended it, and the
    /// processes it started have had theirs, so it is killed now rather
    /// than at the end of the grace period.
    pub(crate) fn deaf_and_alone(&self) -> bool {
        self.deaf
            && !self.killed
            && match &self.cgroup {
                Some(cg) => cg.pids().iter().all(|&p| p == self.child.pid),
                None => !process::has_live_children(self.child.pid),
            }
    }

    /// KILL to every process: the cgroup, the group, and the agent (pid
    /// 1 of its namespace, if it has one: that kills the namespace).
    pub(crate) fn kill(&mut self) {
        if let Some(cg) = &self.cgroup {
            cg.kill();
        }
        process::signal_group(self.child.pid, libc::SIGKILL);
        self.killed = true;
    }
}

//! What to run: the program, its arguments and environment, its limits,
//! its restart policy, whether it may use the network, and how long it
//! gets to stop.
//!
//! A [`Spec`] is plain data; [`Spec::check`] says what is wrong with one
//! before anything is started, and [`Spec::environment`] builds the exact
//! environment the process gets.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The `PATH` every agent gets unless its spec sets one: the usual
/// system directories, so `/bin/sh` scripts find their tools.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The `HOME` every agent gets unless its spec sets one. An agent has no
/// home of its own, and `/` is the directory it starts in.
pub const DEFAULT_HOME: &str = "/";

/// Bytes of output kept per agent unless its spec says otherwise (the
/// tree's `log` keeps as much).
pub const DEFAULT_LOG_BYTES: usize = 64 * 1024;

/// How long `stop` waits after TERM before it sends KILL, unless the
/// spec says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Most bytes of output an agent may be given to keep (16 MiB): the log
/// lives in the runner's memory.
pub const MAX_LOG_BYTES: usize = 16 << 20;

/// What to run and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The program: an absolute path on this host.
    pub program: PathBuf,
    /// Its arguments, after the program's own name (which is `program`).
    pub args: Vec<String>,
    /// Environment variables, in addition to `PATH` and `HOME` (which
    /// these override when named). Nothing else of the runner's own
    /// environment reaches the agent, so secrets in it do not leak.
    pub env: Vec<(String, String)>,
    /// Resource limits, enforced when the host has cgroups.
    pub limits: Limits,
    /// When to start it again after it ends.
    pub restart: RestartPolicy,
    /// Whether it may use the host's network. Without, it runs in a
    /// network namespace of its own, which has only a loopback device
    /// (down): no address outside it is reachable, not even the host's
    /// loopback; Unix sockets in the file system still are.
    pub network: bool,
    /// How long `stop` waits after TERM before it sends KILL.
    pub grace: Duration,
    /// Bytes of output (stdout and stderr together) kept; older output
    /// is dropped a line at a time.
    pub log_bytes: usize,
    /// Descriptors made afresh for each run, which its process gets as
    /// 3, 4, … (see [`Fds`]).
    pub fds: Option<Fds>,
    /// Devices each run opens (read-write) before it gives up the
    /// runner's ids for its user namespace's (a device only the host's
    /// root may open, such as `/dev/fuse`, which must be opened from
    /// inside the namespace that will mount with it); it gets them after
    /// the descriptors of `fds`.
    pub devices: Vec<PathBuf>,
}

/// What makes the descriptors a run is given: called by the supervisor
/// with the agent's name just before it makes each process (first start
/// and every restart), its results passed as 3, 4, … and closed in the
/// supervisor once the process has its copies. The runner uses it to
/// give each run the end of a FUSE connection it serves and its
/// capability, neither of which outlives the run.
#[derive(Clone)]
pub struct Fds(Arc<MakeFds>);

/// What [`Fds`] calls: the agent's name in, the run's descriptors out.
type MakeFds = dyn Fn(&str) -> io::Result<Vec<OwnedFd>> + Send + Sync;

impl Fds {
    /// Descriptors made by `make` for each run (at most 8).
    pub fn new(make: impl Fn(&str) -> io::Result<Vec<OwnedFd>> + Send + Sync + 'static) -> Fds {
        Fds(Arc::new(make))
    }

    /// The descriptors for a run of agent `name`.
    pub(crate) fn make(&self, name: &str) -> io::Result<Vec<OwnedFd>> {
        (self.0)(name)
    }
}

impl fmt::Debug for Fds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fds(..)")
    }
}

impl PartialEq for Fds {
    /// The same maker (a clone of one spec's).
    fn eq(&self, other: &Fds) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Fds {}

impl Spec {
    /// A spec that runs `program` with no arguments, no extra
    /// environment, no limits, no restarts, no network, the default
    /// grace period and log size.
    pub fn new(program: impl Into<PathBuf>) -> Spec {
        Spec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            limits: Limits::default(),
            restart: RestartPolicy::default(),
            network: false,
            grace: DEFAULT_GRACE,
            log_bytes: DEFAULT_LOG_BYTES,
            fds: None,
            devices: Vec::new(),
        }
    }

    /// The same spec with these arguments.
    pub fn args<I, S>(mut self, args: I) -> Spec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// The same spec with one more environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Spec {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Whether the spec can be run as it is: the program is an absolute
    /// path, no string holds a NUL byte, the variable names are names, the
    /// limits and the policy are in range. Whether the program exists is
    /// a question for the host, answered when it is started.
    pub fn check(&self) -> Result<(), SpecError> {
        let program = self.program.to_string_lossy();
        // Read the path's names as written: `components` would drop the
        // `.` in `/usr/./x`.
        if !self.program.is_absolute() || program.split('/').any(|n| n == "." || n == "..") {
            return Err(SpecError::RelativeProgram(program.into_owned()));
        }
        if program.contains('\0') {
            return Err(SpecError::Nul("the program path"));
        }
        if self.args.iter().any(|a| a.contains('\0')) {
            return Err(SpecError::Nul("an argument"));
        }
        for (key, value) in &self.env {
            if !is_var_name(key) {
                return Err(SpecError::VarName(key.clone()));
            }
            if value.contains('\0') {
                return Err(SpecError::Nul("an environment value"));
            }
        }
        self.limits.check()?;
        self.restart.check()?;
        if self.log_bytes == 0 || self.log_bytes > MAX_LOG_BYTES {
            return Err(SpecError::LogBytes(self.log_bytes));
        }
        Ok(())
    }

    /// The environment the process gets, as `KEY=VALUE` strings: `PATH`
    /// and `HOME` (defaults, unless given), then the spec's variables in
    /// order; a variable given twice keeps its last value.
    pub fn environment(&self) -> Vec<String> {
        let mut vars: Vec<(&str, &str)> = vec![("PATH", DEFAULT_PATH), ("HOME", DEFAULT_HOME)];
        for (k, v) in &self.env {
            match vars.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = v,
                None => vars.push((k, v)),
            }
        }
        vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

/// Whether `s` is an environment variable name: a letter or `_`, then
/// letters, digits or `_` (what a shell can name).
fn is_var_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Resource limits; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// CPU time, in percent of one CPU (1 to 10000).
    pub cpu_percent: Option<u32>,
    /// Memory, in bytes (at least 1 MiB).
    pub memory_bytes: Option<u64>,
    /// Processes and threads (at least 1).
    pub pids: Option<u32>,
}

/// Least memory limit: below this, not even a shell starts.
pub const MIN_MEMORY: u64 = 1 << 20;
/// Most CPU, in percent of one CPU (100 CPUs).
pub const MAX_CPU_PERCENT: u32 = 10_000;

impl Limits {
    fn check(&self) -> Result<(), SpecError> {
        if let Some(cpu) = self.cpu_percent
            && !(1..=MAX_CPU_PERCENT).contains(&cpu)
        {
            return Err(SpecError::Cpu(cpu));
        }
        if let Some(mem) = self.memory_bytes
            && mem < MIN_MEMORY
        {
            return Err(SpecError::Memory(mem));
        }
        if self.pids == Some(0) {
            return Err(SpecError::Pids);
        }
        Ok(())
    }

    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.cpu_percent.is_some() || self.memory_bytes.is_some() || self.pids.is_some()
    }
}

/// When an agent's process is started again after it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Whatever its exit.
    Always,
    /// Only after a non-zero exit or a signal.
    OnFailure,
    /// Never: it stays exited.
    Never,
}

impl Restart {
    /// Its word, as the tree writes it.
    pub fn word(self) -> &'static str {
        match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::Never => "never",
        }
    }
}

/// The restart policy: restart per `restart`, at most `max` times within
/// any `window`; one more exit that would restart it puts the agent in
/// crash loop instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// When to restart.
    pub restart: Restart,
    /// Most restarts within the window (at least 1).
    pub max: u32,
    /// The window (at least one second).
    pub window: Duration,
}

impl Default for RestartPolicy {
    /// What the tree gives a new agent: `never max=5 window=60s`.
    fn default() -> RestartPolicy {
        RestartPolicy {
            restart: Restart::Never,
            max: 5,
            window: Duration::from_secs(60),
        }
    }
}

impl RestartPolicy {
    fn check(&self) -> Result<(), SpecError> {
        if self.max == 0 {
            return Err(SpecError::MaxRestarts);
        }
        if self.window < Duration::from_secs(1) {
            return Err(SpecError::Window(self.window));
        }
        Ok(())
    }
}

/// What is wrong with a [`Spec`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    /// The program is not an absolute path.
    RelativeProgram(String),
    /// A string holds a NUL byte, which no exec can carry.
    Nul(&'static str),
    /// An environment variable's name is not a name.
    VarName(String),
    /// The CPU limit is out of range.
    Cpu(u32),
    /// The memory limit is too small.
    Memory(u64),
    /// A limit of no processes at all.
    Pids,
    /// A policy allowing no restarts.
    MaxRestarts,
    /// A restart window shorter than a second.
    Window(Duration),
    /// A log size of nothing, or too large.
    LogBytes(usize),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::RelativeProgram(p) => write!(
                f,
                "program {p:?} is not an absolute path; give the full path, such as /usr/bin/worker"
            ),
            SpecError::Nul(what) => {
                write!(f, "{what} holds a NUL byte, which no program can be given")
            }
            SpecError::VarName(k) => write!(
                f,
                "environment: {k:?} is not a variable name: a letter or _, then letters, digits or _"
            ),
            SpecError::Cpu(c) => write!(
                f,
                "cpu limit {c}% is out of range: 1 to {MAX_CPU_PERCENT} percent of one CPU"
            ),
            SpecError::Memory(m) => write!(
                f,
                "memory limit {m} bytes is too small: at least {MIN_MEMORY} (1M)"
            ),
            SpecError::Pids => {
                f.write_str("pids limit 0 leaves no room for the program itself: at least 1")
            }
            SpecError::MaxRestarts => f.write_str("restart max=0: at least 1 (or policy never)"),
            SpecError::Window(w) => write!(f, "restart window {w:?} is too short: at least 1s"),
            SpecError::LogBytes(n) => write!(
                f,
                "log size {n} bytes is out of range: 1 to {MAX_LOG_BYTES}"
            ),
        }
    }
}

impl std::error::Error for SpecError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_program_is_refused_by_name() {
        for p in ["bin/x", "x", "/usr/../bin/x", "/usr/./x"] {
            let err = Spec::new(p).check().unwrap_err();
            assert!(matches!(err, SpecError::RelativeProgram(_)), "{p}: {err}");
            assert!(err.to_string().contains(p), "{err}");
        }
        Spec::new("/bin/sh").check().unwrap();
    }

    #[test]
    fn bad_values_are_refused() {
        let mut s = Spec::new("/bin/sh");
        s.limits.cpu_percent = Some(0);
        assert_eq!(s.check(), Err(SpecError::Cpu(0)));
        s.limits.cpu_percent = Some(50);
        s.limits.memory_bytes = Some(10);
        assert_eq!(s.check(), Err(SpecError::Memory(10)));
        s.limits.memory_bytes = None;
        s.limits.pids = Some(0);
        assert_eq!(s.check(), Err(SpecError::Pids));
        s.limits.pids = Some(4);
        s.restart.max = 0;
        assert_eq!(s.check(), Err(SpecError::MaxRestarts));
        s.restart.max = 1;
        s.restart.window = Duration::from_millis(10);
        assert!(matches!(s.check(), Err(SpecError::Window(_))));
        s.restart.window = Duration::from_secs(1);
        s.check().unwrap();
        assert!(matches!(
            s.clone().env("9X", "1").check(),
            Err(SpecError::VarName(_))
        ));
        assert!(matches!(
            s.clone().args(["a\0b"]).check(),
            Err(SpecError::Nul(_))
        ));
        s.log_bytes = 0;
        assert_eq!(s.check(), Err(SpecError::LogBytes(0)));
    }

    #[test]
    fn the_environment_is_path_home_and_what_is_given() {
        let s = Spec::new("/bin/sh")
            .env("A", "1")
            .env("HOME", "/tmp")
            .env("A", "2");
        assert_eq!(
            s.environment(),
            vec![
                format!("PATH={DEFAULT_PATH}"),
                "HOME=/tmp".to_string(),
                "A=2".to_string()
            ]
        );
    }
}

//! Spawning a program inside a sandbox, the way `ip netns exec` does: the child joins the
//! sandbox's network namespace, gets a private mount namespace (a slave of the host's, so nothing
//! leaks back) in which the sandbox's hosts, resolv.conf and hostname files cover the host's, and,
//! when asked, a UTS namespace of its own with the sandbox's hostname. Between fork and exec the
//! child only makes plain system calls on values prepared before the fork. This module does not
//! talk to berthd, does not wait for the child and does not forward signals: the caller owns the
//! `Child` it returns.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd;

/// Longest hostname Linux accepts (`HOST_NAME_MAX`).
const MAX_HOSTNAME_LEN: usize = 64;

/// Why a program could not be started inside a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("no program to run")]
    NoProgram,
    #[error("invalid hostname {hostname:?}: {reason}")]
    InvalidHostname { hostname: String, reason: &'static str },
    #[error("path {0:?} contains a nul byte")]
    PathWithNul(PathBuf),
    #[error("cannot open network namespace {}: {}", path.display(), describe(error))]
    OpenNetns { path: PathBuf, error: io::Error },
    #[error("cannot open the user namespace of rootless berthd {}: {}", path.display(), describe(error))]
    OpenUserns { path: PathBuf, error: io::Error },
    #[error("cannot create a pipe to report the sandbox set-up: {}", describe(error))]
    ReportPipe { error: io::Error },
    /// A step between fork and exec failed: `action` says which one ("enter network namespace ...").
    #[error("cannot run {:?}: cannot {action}: {}", program.to_string_lossy(), describe(error))]
    Setup { program: OsString, action: String, error: io::Error },
    /// The sandbox was set up but the program could not be executed (not found, not executable).
    #[error("cannot run {:?}: {}", program.to_string_lossy(), describe(error))]
    Exec { program: OsString, error: io::Error },
}

/// The text of an I/O error without Rust's "(os error N)" suffix: "No such file or directory".
fn describe(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_owned(),
        None => error.to_string(),
    }
}

/// A program to start inside a sandbox's namespaces, built like `std::process::Command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxCommand {
    netns_path: PathBuf,
    /// Rootless: the pid of berthd's child, whose user namespace the command enters first and
    /// through whose root (`/proc/PID/root`) the namespace file is opened.
    rootless_child: Option<u32>,
    hosts_file: Option<PathBuf>,
    resolv_conf_file: Option<PathBuf>,
    hostname_file: Option<PathBuf>,
    hostname: Option<String>,
    program: OsString,
    args: Vec<OsString>,
    detach: bool,
}

impl SandboxCommand {
    /// `netns_path` is a namespace file such as `/run/berth/netns/ID` or `/proc/PID/ns/net`.
    pub fn new(netns_path: impl Into<PathBuf>, program: impl Into<OsString>) -> Self {
        Self {
            netns_path: netns_path.into(),
            rootless_child: None,
            hosts_file: None,
            resolv_conf_file: None,
            hostname_file: None,
            hostname: None,
            program: program.into(),
            args: Vec::new(),
            detach: false,
        }
    }

    /// Rootless berthd: the command enters the user namespace of berthd's child `pid` first (the
    /// user owns it), and `netns_path` is a path in that child's mount namespace.
    pub fn rootless_child(&mut self, pid: u32) -> &mut Self {
        self.rootless_child = Some(pid);
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// Bind-mounted on /etc/hosts, when the host has one.
    pub fn hosts_file(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.hosts_file = Some(path.into());
        self
    }

    /// Bind-mounted on /etc/resolv.conf, when the host has one.
    pub fn resolv_conf_file(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.resolv_conf_file = Some(path.into());
        self
    }

    /// Bind-mounted on /etc/hostname, when the host has one.
    pub fn hostname_file(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.hostname_file = Some(path.into());
        self
    }

    /// Runs the program in a new UTS namespace with this hostname; without it the program keeps
    /// the host's.
    pub fn hostname(&mut self, hostname: impl Into<String>) -> &mut Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// Detached: the program leads a new session and its stdin, stdout and stderr are /dev/null.
    /// Attached (the default): it inherits stdio and stays in the caller's process group, so a
    /// terminal's Ctrl-C reaches it.
    pub fn detach(&mut self, detach: bool) -> &mut Self {
        self.detach = detach;
        self
    }

    /// Starts the program. The environment and working directory are the caller's.
    pub fn spawn(&self) -> Result<Child, ProcessError> {
        let plan = self.plan()?;
        let netns_path = match self.rootless_child {
            Some(pid) => Path::new(&format!("/proc/{pid}/root"))
                .join(self.netns_path.strip_prefix("/").unwrap_or(&self.netns_path)),
            None => self.netns_path.clone(),
        };
        let netns =
            File::open(&netns_path).map_err(|error| ProcessError::OpenNetns { path: netns_path.clone(), error })?;
        let userns = match self.rootless_child {
            Some(pid) => {
                let path = PathBuf::from(format!("/proc/{pid}/ns/user"));
                Some(File::open(&path).map_err(|error| ProcessError::OpenUserns { path, error })?)
            }
            None => None,
        };
        let (report_reader, report_writer) =
            unistd::pipe2(OFlag::O_CLOEXEC).map_err(|errno| ProcessError::ReportPipe { error: errno.into() })?;
        let setup = ChildSetup { plan, userns, netns, report: report_writer };

        let mut command = Command::new(&self.program);
        command.args(&self.args);
        if self.detach {
            command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        }
        // SAFETY: the closure runs in the forked child before exec. It only makes system calls
        // (setsid, setns, unshare, mount, umount2, sethostname, write) through nix wrappers that do not
        // allocate, on file descriptors and C strings built before the fork, and it takes no
        // locks, so it is async-signal-safe even though the caller may have other threads.
        unsafe {
            command.pre_exec(move || setup.run_in_child());
        }
        let spawned = command.spawn();
        // The command owns the setup, and with it the parent's copy of the report pipe's write
        // end: drop it so reading the pipe ends once the child has exec'd or exited.
        drop(command);
        spawned.map_err(|error| match failed_step(report_reader) {
            Some(step) => {
                ProcessError::Setup { program: self.program.clone(), action: self.describe_step(step), error }
            }
            None => ProcessError::Exec { program: self.program.clone(), error },
        })
    }

    /// Checks the builder and turns it into what the child needs, with no allocation left to do
    /// after the fork.
    fn plan(&self) -> Result<ChildPlan, ProcessError> {
        if self.program.is_empty() {
            return Err(ProcessError::NoProgram);
        }
        let hostname = match &self.hostname {
            Some(hostname) => {
                validate_hostname(hostname)?;
                Some(OsString::from(hostname))
            }
            None => None,
        };
        let files = [
            (SetupStep::BindHosts, &self.hosts_file, c"/etc/hosts"),
            (SetupStep::BindResolvConf, &self.resolv_conf_file, c"/etc/resolv.conf"),
            (SetupStep::BindHostname, &self.hostname_file, c"/etc/hostname"),
        ];
        let mut binds = Vec::new();
        for (step, source, target) in files {
            let Some(source) = source else { continue };
            // The child's mount namespace starts as a copy of ours: what is missing here is
            // missing there, and there is nothing to cover.
            if !Path::new(OsStr::from_bytes(target.to_bytes())).exists() {
                continue;
            }
            binds.push(BindMount { step, source: c_path(source)?, target });
        }
        Ok(ChildPlan { new_session: self.detach, binds, hostname })
    }

    /// What a failed step was doing, for the error message.
    fn describe_step(&self, step: SetupStep) -> String {
        let bind = |source: &Option<PathBuf>, target: &str| {
            let source = source.as_deref().unwrap_or(Path::new("?"));
            format!("bind-mount {} on {target}", source.display())
        };
        match step {
            SetupStep::NewSession => "start a new session".to_owned(),
            SetupStep::EnterUserns => "enter the user namespace of rootless berthd".to_owned(),
            SetupStep::EnterNetns => {
                format!("enter network namespace {}", self.netns_path.display())
            }
            SetupStep::NewMountNs => "create a mount namespace".to_owned(),
            SetupStep::MakeMountsSlave => "make the mount namespace a slave of the host's".to_owned(),
            SetupStep::RemountSys => "mount a sysfs of the sandbox's namespace on /sys".to_owned(),
            SetupStep::BindHosts => bind(&self.hosts_file, "/etc/hosts"),
            SetupStep::BindResolvConf => bind(&self.resolv_conf_file, "/etc/resolv.conf"),
            SetupStep::BindHostname => bind(&self.hostname_file, "/etc/hostname"),
            SetupStep::NewUtsNs => "create a UTS namespace".to_owned(),
            SetupStep::SetHostname => format!("set hostname {:?}", self.hostname.as_deref().unwrap_or_default()),
        }
    }
}

fn validate_hostname(hostname: &str) -> Result<(), ProcessError> {
    let reason = if hostname.is_empty() {
        "a hostname must not be empty"
    } else if hostname.len() > MAX_HOSTNAME_LEN {
        "longer than 64 bytes"
    } else if hostname.contains('\0') {
        "contains a nul byte"
    } else {
        return Ok(());
    };
    Err(ProcessError::InvalidHostname { hostname: hostname.to_owned(), reason })
}

fn c_path(path: &Path) -> Result<CString, ProcessError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| ProcessError::PathWithNul(path.into()))
}

/// The steps between fork and exec, in the order the child takes them. The child writes the
/// failing one as a single byte (its index) to the report pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetupStep {
    NewSession,
    EnterUserns,
    EnterNetns,
    NewMountNs,
    MakeMountsSlave,
    RemountSys,
    BindHosts,
    BindResolvConf,
    BindHostname,
    NewUtsNs,
    SetHostname,
}

impl SetupStep {
    const ALL: [SetupStep; 11] = [
        SetupStep::NewSession,
        SetupStep::EnterUserns,
        SetupStep::EnterNetns,
        SetupStep::NewMountNs,
        SetupStep::MakeMountsSlave,
        SetupStep::RemountSys,
        SetupStep::BindHosts,
        SetupStep::BindResolvConf,
        SetupStep::BindHostname,
        SetupStep::NewUtsNs,
        SetupStep::SetHostname,
    ];

    fn as_byte(self) -> u8 {
        self as u8
    }

    fn from_byte(byte: u8) -> Option<Self> {
        Self::ALL.get(usize::from(byte)).copied()
    }
}

/// Reads the step the child reported, if it reported one before exiting.
fn failed_step(report_reader: OwnedFd) -> Option<SetupStep> {
    let mut byte = [0u8; 1];
    match File::from(report_reader).read(&mut byte) {
        Ok(1) => SetupStep::from_byte(byte[0]),
        _ => None,
    }
}

#[derive(Debug)]
struct BindMount {
    step: SetupStep,
    source: CString,
    target: &'static CStr,
}

/// Everything the child does, decided before the fork.
#[derive(Debug)]
struct ChildPlan {
    new_session: bool,
    binds: Vec<BindMount>,
    hostname: Option<OsString>,
}

/// The plan with the open descriptors it needs, moved into the `pre_exec` closure.
#[derive(Debug)]
struct ChildSetup {
    plan: ChildPlan,
    /// Rootless: the user namespace to enter before anything else.
    userns: Option<File>,
    netns: File,
    /// Write end of the report pipe (close-on-exec).
    report: OwnedFd,
}

impl ChildSetup {
    /// Runs in the forked child: applies the plan, or reports the failing step and fails.
    fn run_in_child(&self) -> io::Result<()> {
        self.apply().map_err(|(step, errno)| {
            // Nothing more can be done if the report is lost: the error still reaches the parent.
            let _ = unistd::write(&self.report, &[step.as_byte()]);
            io::Error::from(errno)
        })
    }

    fn apply(&self) -> Result<(), (SetupStep, Errno)> {
        let at = |step: SetupStep| move |errno: Errno| (step, errno);
        let plan = &self.plan;
        if plan.new_session {
            unistd::setsid().map_err(at(SetupStep::NewSession))?;
        }
        if let Some(userns) = &self.userns {
            setns(userns, CloneFlags::CLONE_NEWUSER).map_err(at(SetupStep::EnterUserns))?;
        }
        setns(&self.netns, CloneFlags::CLONE_NEWNET).map_err(at(SetupStep::EnterNetns))?;
        unshare(CloneFlags::CLONE_NEWNS).map_err(at(SetupStep::NewMountNs))?;
        mount(None::<&CStr>, c"/", None::<&CStr>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&CStr>)
            .map_err(at(SetupStep::MakeMountsSlave))?;
        // A fresh sysfs shows the sandbox's own interfaces under /sys/class/net, as with
        // `ip netns exec`; the old one is detached only in this private mount namespace.
        match umount2(c"/sys", MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) => {}
            Err(errno) => return Err((SetupStep::RemountSys, errno)),
        }
        mount(Some(c"sysfs"), c"/sys", Some(c"sysfs"), MsFlags::empty(), None::<&CStr>)
            .map_err(at(SetupStep::RemountSys))?;
        for bind in &plan.binds {
            mount(Some(bind.source.as_c_str()), bind.target, None::<&CStr>, MsFlags::MS_BIND, None::<&CStr>)
                .map_err(at(bind.step))?;
        }
        if let Some(hostname) = &plan.hostname {
            unshare(CloneFlags::CLONE_NEWUTS).map_err(at(SetupStep::NewUtsNs))?;
            unistd::sethostname(hostname).map_err(at(SetupStep::SetHostname))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_program_is_refused() {
        let error = SandboxCommand::new("/proc/self/ns/net", "").spawn().unwrap_err();
        assert!(matches!(error, ProcessError::NoProgram), "{error}");
    }

    #[test]
    fn hostnames_are_checked_before_anything_runs() {
        for (hostname, reason) in [
            ("", "a hostname must not be empty"),
            (&"h".repeat(65)[..], "longer than 64 bytes"),
            ("a\0b", "contains a nul byte"),
        ] {
            let error = SandboxCommand::new("/nonexistent", "true").hostname(hostname).spawn().unwrap_err();
            assert!(matches!(&error, ProcessError::InvalidHostname { reason: r, .. } if *r == reason), "{error}");
        }
        assert!(validate_hostname(&"h".repeat(64)).is_ok());
    }

    #[test]
    fn a_file_path_with_a_nul_byte_is_refused() {
        let error = SandboxCommand::new("/proc/self/ns/net", "true")
            .hosts_file(OsStr::from_bytes(b"/tmp/a\0b"))
            .spawn()
            .unwrap_err();
        assert!(matches!(error, ProcessError::PathWithNul(_)), "{error}");
    }

    #[test]
    fn a_missing_namespace_file_names_the_path() {
        let error = SandboxCommand::new("/nonexistent/berth/netns/x", "true").spawn().unwrap_err();
        assert!(matches!(error, ProcessError::OpenNetns { .. }), "{error}");
        assert_eq!(
            error.to_string(),
            "cannot open network namespace /nonexistent/berth/netns/x: No such file or directory"
        );
    }

    #[test]
    fn steps_round_trip_through_their_byte() {
        for step in SetupStep::ALL {
            assert_eq!(SetupStep::from_byte(step.as_byte()), Some(step));
        }
        assert_eq!(SetupStep::from_byte(200), None);
    }

    /// Needs no root: the child fails at its first privileged step and the parent learns which.
    /// As root the same command fails later, at the bind mount of a missing source file; either
    /// way nothing outside the child's own namespaces changes.
    #[test]
    fn the_failing_step_is_reported() {
        let mut command = SandboxCommand::new("/proc/self/ns/net", "true");
        command.hosts_file("/nonexistent/berth/hosts");
        let error = command.spawn().unwrap_err();
        let ProcessError::Setup { action, .. } = &error else {
            panic!("expected a set-up error, got {error}");
        };
        if unistd::geteuid().is_root() {
            if Path::new("/etc/hosts").exists() {
                assert_eq!(action, "bind-mount /nonexistent/berth/hosts on /etc/hosts");
            }
        } else {
            assert_eq!(action, "enter network namespace /proc/self/ns/net");
        }
    }

    /// Root only: runs a shell in this process's own network namespace (joining it changes
    /// nothing) with a hosts file and hostname of its own, both private to the child's new mount
    /// and UTS namespaces.
    #[test]
    fn the_child_sees_the_sandbox_files_and_hostname() {
        if !berth_testns::can_run_as_root()
            || !berth_testns::can_run(Path::new("/etc/hosts").exists(), "an /etc/hosts to cover")
        {
            return;
        }
        let dir = std::env::temp_dir().join(format!("berth-process-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = dir.join("hosts");
        let seen = dir.join("seen");
        std::fs::write(&hosts, "10.0.0.2 sandbox-test\n").unwrap();
        let script = format!("{{ cat /etc/hosts; hostname; }} > {}", seen.display());
        let status = SandboxCommand::new("/proc/self/ns/net", "/bin/sh")
            .args(["-c", &script])
            .hosts_file(&hosts)
            .hostname("sandbox-test")
            .spawn()
            .map(|mut child| child.wait());
        let seen = std::fs::read_to_string(&seen);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(status.unwrap().unwrap().success());
        assert_eq!(seen.unwrap(), "10.0.0.2 sandbox-test\nsandbox-test\n");
        assert_ne!(std::fs::read_to_string("/etc/hosts").unwrap(), "10.0.0.2 sandbox-test\n");
        assert_ne!(unistd::gethostname().unwrap(), "sandbox-test");
    }

    #[test]
    fn a_missing_program_is_an_exec_error_when_set_up_succeeds() {
        if !berth_testns::can_run_as_root() {
            return;
        }
        let error = SandboxCommand::new("/proc/self/ns/net", "/nonexistent/program").spawn().unwrap_err();
        assert_eq!(error.to_string(), "cannot run \"/nonexistent/program\": No such file or directory");
    }
}

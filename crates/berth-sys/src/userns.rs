//! Rootless mode's namespaces. A rootless berthd is two processes: the parent stays in the
//! user's own namespaces; the child gets a new user namespace (the user's uid as root, the
//! user's /etc/subuid and /etc/subgid ranges above it) and, inside it, new network and mount
//! namespaces where the rootful daemon runs unchanged. The handshake:
//!
//! 1. the parent starts the child ([`spawn_child`]) with `PR_SET_PDEATHSIG` (it dies with the
//!    parent) and two pipes;
//! 2. the child, still single-threaded, unshares its user namespace and says so on the first
//!    pipe ([`ChildEnd::enter`]);
//! 3. the parent writes the child's uid and gid maps ([`write_id_maps`]: newuidmap/newgidmap
//!    with the ranges, or only the user's own ids when there are none) and says so on the
//!    second pipe (or closes it without a word when mapping failed);
//! 4. the child, now root in its namespace, unshares network and mount namespaces, makes its
//!    mounts private (nothing it mounts reaches the user's namespace) and says so;
//! 5. the parent gives the new network namespace its way out (slirp4netns) and says so, and
//!    the child goes on.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::{pipe2, Gid, Uid};

/// The handshake's words: the child's user namespace exists; it is mapped; the child's network
/// namespace exists; it is connected.
const UNSHARED: u8 = b'u';
const MAPPED: u8 = b'm';
const NETWORK_MADE: u8 = b'n';
const CONNECTED: u8 = b'c';

fn read_word(pipe: &mut File, expected: u8, what: &str) -> Result<(), UsernsError> {
    let mut byte = [0u8];
    match pipe.read(&mut byte) {
        Ok(1) if byte[0] == expected => Ok(()),
        Ok(_) => Err(UsernsError::Handshake(what.to_owned())),
        Err(e) => Err(io_err("read the rootless handshake")(e)),
    }
}

/// The environment variable that tells a started berthd it is the rootless child, and on which
/// inherited descriptors its ends of the two pipes and of the service socket are
/// (`TO_PARENT,FROM_PARENT,SERVICE`).
pub const CHILD_ENV: &str = "BERTH_ROOTLESS_CHILD_FDS";

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot {action}: {source}")]
    Sys {
        action: String,
        #[source]
        source: nix::Error,
    },
    #[error("the rootless child {0}")]
    Handshake(String),
}

fn io_err(action: impl Into<String>) -> impl FnOnce(io::Error) -> UsernsError {
    let action = action.into();
    move |source| UsernsError::Io { action, source }
}

fn sys_err(action: impl Into<String>) -> impl FnOnce(nix::Error) -> UsernsError {
    let action = action.into();
    move |source| UsernsError::Sys { action, source }
}

/// The parent's side of a started child.
#[derive(Debug)]
pub struct ParentEnd {
    pub child: Child,
    from_child: File,
    to_child: File,
    /// The parent's end of the service socket (SOCK_SEQPACKET): what the child asks of the
    /// user's namespace once it runs, such as binding a published port.
    pub service: OwnedFd,
}

impl ParentEnd {
    /// Waits until the child has its user namespace (step 2).
    pub fn wait_unshared(&mut self) -> Result<(), UsernsError> {
        read_word(&mut self.from_child, UNSHARED, "exited before making its user namespace")
    }

    /// Tells the child its namespace is mapped (step 3 done).
    pub fn say_mapped(&mut self) -> Result<(), UsernsError> {
        self.to_child.write_all(&[MAPPED]).map_err(io_err("write to the rootless child"))
    }

    /// Waits until the child has its network namespace (step 4).
    pub fn wait_network(&mut self) -> Result<(), UsernsError> {
        read_word(&mut self.from_child, NETWORK_MADE, "exited before making its network namespace")
    }

    /// Tells the child its network namespace is connected (step 5 done).
    pub fn say_connected(&mut self) -> Result<(), UsernsError> {
        self.to_child.write_all(&[CONNECTED]).map_err(io_err("write to the rootless child"))
    }
}

/// Starts `command` as the rootless child: it dies when the calling thread does (so call this
/// from the thread that lives as long as the parent), and finds its pipe ends through
/// [`CHILD_ENV`].
pub fn spawn_child(mut command: Command) -> Result<ParentEnd, UsernsError> {
    // The child's ends are inherited (no O_CLOEXEC); the parent's are not.
    let (from_child, child_writes) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys_err("make a pipe"))?;
    let (child_reads, to_child) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys_err("make a pipe"))?;
    let (service, child_service) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(sys_err("make the service socket"))?;
    let inherited = [child_writes.as_raw_fd(), child_reads.as_raw_fd(), child_service.as_raw_fd()];
    command.env(CHILD_ENV, format!("{},{},{}", inherited[0], inherited[1], inherited[2]));
    // SAFETY: the closure runs in the forked child before exec and only makes two system calls
    // (fcntl to clear close-on-exec on two descriptors that exist, and prctl), allocating
    // nothing and taking no lock, so it is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            for fd in inherited {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(io_err("start the rootless child"))?;
    drop((child_writes, child_reads, child_service));
    Ok(ParentEnd { child, from_child: File::from(from_child), to_child: File::from(to_child), service })
}

/// The child's side of the handshake, from [`CHILD_ENV`].
#[derive(Debug)]
pub struct ChildEnd {
    to_parent: File,
    from_parent: File,
    service: OwnedFd,
}

impl ChildEnd {
    /// The pipe ends named by [`CHILD_ENV`], when this process is a rootless child.
    pub fn from_env() -> Option<Result<Self, UsernsError>> {
        let value = std::env::var(CHILD_ENV).ok()?;
        // Still single-threaded (the caller runs before any runtime): nothing reads the
        // environment concurrently.
        std::env::remove_var(CHILD_ENV);
        let parsed: Option<Vec<RawFd>> = value.split(',').map(|fd| fd.parse().ok().filter(|fd| *fd > 2)).collect();
        let Some([to_parent, from_parent, service]) = parsed.and_then(|fds| <[RawFd; 3]>::try_from(fds).ok()) else {
            return Some(Err(UsernsError::Handshake(format!("was given bad descriptors {value:?}"))));
        };
        if to_parent == from_parent || from_parent == service || to_parent == service {
            return Some(Err(UsernsError::Handshake(format!("was given bad descriptors {value:?}"))));
        }
        for fd in [to_parent, from_parent, service] {
            // SAFETY: F_GETFD only reads the descriptor's flags; a closed one gives EBADF.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
                return Some(Err(UsernsError::Handshake(format!("was given descriptor {fd}, which is not open"))));
            }
        }
        // SAFETY: the three descriptors are distinct, were just checked to be open, were
        // inherited for this purpose alone, and nothing else in this process owns them.
        let (to_parent, from_parent, service) = unsafe {
            (OwnedFd::from_raw_fd(to_parent), OwnedFd::from_raw_fd(from_parent), OwnedFd::from_raw_fd(service))
        };
        for fd in [&to_parent, &from_parent, &service] {
            if let Err(e) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)) {
                return Some(Err(sys_err("keep the handshake's descriptors from the child's children")(e)));
            }
        }
        Some(Ok(Self { to_parent: File::from(to_parent), from_parent: File::from(from_parent), service }))
    }

    /// Steps 2 and 4: makes the user namespace, waits for the parent to map it, makes the
    /// network and mount namespaces, and waits for the parent to connect the network. Must run
    /// while the process has one thread. Returns the child's end of the service socket.
    pub fn enter(mut self) -> Result<OwnedFd, UsernsError> {
        unshare(CloneFlags::CLONE_NEWUSER).map_err(sys_err("make a user namespace"))?;
        self.to_parent.write_all(&[UNSHARED]).map_err(io_err("write to the rootless parent"))?;
        read_word(&mut self.from_parent, MAPPED, "was not given a uid map by its parent")?;
        unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS)
            .map_err(sys_err("make network and mount namespaces"))?;
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_PRIVATE | MsFlags::MS_REC, None::<&str>)
            .map_err(sys_err("make the child's mounts private"))?;
        self.to_parent.write_all(&[NETWORK_MADE]).map_err(io_err("write to the rootless parent"))?;
        read_word(&mut self.from_parent, CONNECTED, "was not given a way out by its parent")?;
        Ok(self.service)
    }
}

/// A range of subordinate ids from /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

/// The first range `file` (/etc/subuid or /etc/subgid) gives the user `name` or `id`.
pub fn subordinate_range(file: &Path, name: &str, id: u32) -> Option<IdRange> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.trim().splitn(3, ':');
        let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
        if owner != name && owner.parse() != Ok(id) {
            return None;
        }
        let range = IdRange { start: start.parse().ok()?, count: count.parse().ok()? };
        (range.count > 0).then_some(range)
    })
}

/// How the child's namespace was mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// Root is the user; the user's subordinate ranges follow from id 1.
    WithRanges { uids: IdRange, gids: IdRange },
    /// Only the user's own ids (no ranges for the user): root inside is the user, nothing else.
    OwnIdsOnly,
}

/// Step 3: maps the child `pid`'s user namespace. With `ranges`, through newuidmap/newgidmap
/// (setuid helpers from Debian's uidmap); without, by writing the maps directly, which the
/// kernel allows for the user's own ids only (after denying setgroups).
pub fn write_id_maps(pid: u32, uid: Uid, gid: Gid, ranges: Option<(IdRange, IdRange)>) -> Result<Mapping, UsernsError> {
    match ranges {
        Some((uids, gids)) => {
            for (helper, own, range) in [("newuidmap", uid.as_raw(), uids), ("newgidmap", gid.as_raw(), gids)] {
                let output = Command::new(helper)
                    .args([pid, 0, own, 1, 1, range.start, range.count].map(|n| n.to_string()))
                    .output()
                    .map_err(io_err(format!("run {helper}")))?;
                if !output.status.success() {
                    return Err(UsernsError::Handshake(format!(
                        "could not be mapped: {helper} failed: {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    )));
                }
            }
            Ok(Mapping::WithRanges { uids, gids })
        }
        None => {
            let proc = PathBuf::from(format!("/proc/{pid}"));
            let write = |file: &str, text: String| {
                std::fs::write(proc.join(file), text).map_err(io_err(format!("write /proc/{pid}/{file}")))
            };
            write("uid_map", format!("0 {uid} 1\n"))?;
            write("setgroups", "deny\n".into())?;
            write("gid_map", format!("0 {gid} 1\n"))?;
            Ok(Mapping::OwnIdsOnly)
        }
    }
}

//! A process told apart from every other process that had or will have its pid: its pid plus its
//! start time (field 22 of `/proc/PID/stat`, clock ticks since boot, fixed for the life of the
//! process). A pid alone is a number the kernel hands out again once its process is reaped, so
//! signalling a remembered pid can hit an unrelated process; here a signal goes through a pidfd
//! opened *before* the start time is checked, and the pidfd keeps naming that process whatever
//! happens to the number afterwards.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::signal::Signal;

/// What `/proc/PID/stat` says about a process that berth needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Parent's pid (0 for the pid namespace's init as seen from inside).
    pub parent: u32,
    /// Clock ticks since boot at which the process started.
    pub start_time: u64,
    /// Exited but not reaped (`Z`) or being torn down (`X`): no longer runs anything.
    pub finished: bool,
}

/// Reads `/proc/PID/stat`; `Err` of kind NotFound when no process has this pid.
pub fn proc_stat(pid: u32) -> io::Result<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("unexpected /proc/{pid}/stat: {text:?}")))
}

/// `pid (comm) state ppid ... starttime ...`; comm may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let after_comm = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // fields[0] is field 3 (state); field N is fields[N - 3].
    let state = fields.first()?;
    Some(ProcStat {
        parent: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
        finished: matches!(*state, "Z" | "X" | "x"),
    })
}

/// Whether `pid` is `ancestor` or one of its descendants, following parents in `/proc` (at most
/// 64 generations).
pub fn descends_from(pid: u32, ancestor: u32) -> bool {
    let mut current = pid;
    for _ in 0..64 {
        if current == ancestor {
            return true;
        }
        match proc_stat(current) {
            Ok(stat) if stat.parent != 0 && stat.parent != current => current = stat.parent,
            _ => return false,
        }
    }
    false
}

/// A running process, pinned by a pidfd: signals sent through it reach this process or nobody.
#[derive(Debug)]
pub struct PinnedProcess {
    pidfd: OwnedFd,
}

impl PinnedProcess {
    /// The process `pid` if it still is the one that started at `start_time` and has not
    /// finished; `None` when the pid is free, reused by another process, or a zombie.
    pub fn open(pid: u32, start_time: u64) -> Option<Self> {
        let pidfd = pidfd_open(pid).ok()?;
        // Checked after the pidfd is open: if the stat still shows the start time recorded at
        // registration, the pid named that process when the pidfd was opened.
        let stat = proc_stat(pid).ok()?;
        (stat.start_time == start_time && !stat.finished).then_some(Self { pidfd })
    }

    /// Sends `signal`; an error when the process has ended meanwhile (ESRCH).
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        // SAFETY: pidfd_send_signal(2) with a pidfd this struct owns, a valid signal number, a
        // null siginfo (the kernel fills it as kill(2) would) and no flags; no memory is shared.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1; nothing is
    // passed by pointer.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let text = "4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 98 0 0 0 0 0 0 0 20 0 1 0 123456 8192 1 0";
        assert_eq!(parse_stat(text), Some(ProcStat { parent: 17, start_time: 123456, finished: false }));
        let zombie = text.replace(") S 17", ") Z 17");
        assert!(parse_stat(&zombie).unwrap().finished);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_descends_from_itself_and_its_parent_not_from_a_sibling() {
        let me = std::process::id();
        let parent = proc_stat(me).unwrap().parent;
        assert!(descends_from(me, me));
        assert!(descends_from(me, parent));
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        assert!(descends_from(child.id(), me));
        assert!(!descends_from(me, child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_pinned_process_is_refused_once_its_start_time_differs_or_it_ended() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let start = proc_stat(pid).unwrap().start_time;
        assert!(PinnedProcess::open(pid, start + 1).is_none(), "another start time is another process");
        let pinned = PinnedProcess::open(pid, start).expect("the process as registered");
        // Unreaped, it is a zombie: no longer a process to signal or count as running.
        pinned.signal(Signal::SIGKILL).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !proc_stat(pid).unwrap().finished {
            assert!(std::time::Instant::now() < deadline, "the killed child never became a zombie");
            std::thread::yield_now();
        }
        assert!(PinnedProcess::open(pid, start).is_none(), "a zombie is not running");
        child.wait().unwrap();
        assert!(PinnedProcess::open(pid, start).is_none(), "a reaped pid names nothing");
        assert!(pinned.signal(Signal::SIGTERM).is_err(), "the pidfd never reaches another process");
    }
}

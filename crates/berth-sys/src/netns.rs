//! Network namespaces as files: create one and pin it with a bind mount (as `ip netns add` does),
//! delete it, enter it on the current thread behind a guard that restores the original namespace,
//! and run a closure on a dedicated thread inside one. It never touches links or addresses; that
//! is berth-netlink's job, done through a socket opened inside the namespace.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot {action} network namespace {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot {action} network namespace {path}: {source}")]
    Sys {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("a thread working in network namespace {0} panicked")]
    ThreadPanicked(PathBuf),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> NetnsError + 'a {
    move |source| NetnsError::Io { action, path: path.to_owned(), source }
}

fn sys_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(nix::Error) -> NetnsError + 'a {
    move |source| NetnsError::Sys { action, path: path.to_owned(), source }
}

/// Makes `dir` a shared mount point of its own (bind-mounting it on itself first if needed), so
/// namespace mounts made later under it are unmounted in every mount namespace that copied them,
/// and a removed sandbox's namespace is really freed. This is what `ip netns` does for /run/netns.
pub fn prepare_netns_dir(dir: &Path) -> Result<(), NetnsError> {
    fs::create_dir_all(dir).map_err(io_err("create the directory for", dir))?;
    let make_shared = || mount(None::<&str>, dir, None::<&str>, MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>);
    match make_shared() {
        Ok(()) if is_mount_point(dir) => Ok(()),
        _ => {
            mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(sys_err("bind-mount the directory for", dir))?;
            make_shared().map_err(sys_err("share the directory for", dir))
        }
    }
}

fn is_mount_point(dir: &Path) -> bool {
    let (Ok(me), Ok(parent)) = (fs::metadata(dir), fs::metadata(dir.join(".."))) else {
        return false;
    };
    me.dev() != parent.dev()
        || fs::read_to_string("/proc/self/mountinfo")
            .map(|info| {
                let wanted = dir.to_string_lossy();
                info.lines().any(|l| l.split(' ').nth(4) == Some(wanted.as_ref()))
            })
            .unwrap_or(false)
}

/// Creates a new, empty network namespace pinned at `path` (which must not exist yet).
pub fn create_netns(path: &Path) -> Result<(), NetnsError> {
    File::options().write(true).create_new(true).open(path).map_err(io_err("create the mount point of", path))?;
    let target = path.to_owned();
    let pinned = std::thread::spawn(move || -> Result<(), NetnsError> {
        // This thread ends right after, so leaving it in the new namespace is harmless.
        unshare(CloneFlags::CLONE_NEWNET).map_err(sys_err("create", &target))?;
        mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(sys_err("pin", &target))
    })
    .join()
    .map_err(|_| NetnsError::ThreadPanicked(path.to_owned()))
    .and_then(|r| r);
    if pinned.is_err() {
        let _ = fs::remove_file(path);
    }
    pinned
}

/// Unpins and removes the namespace file at `path`; the namespace itself goes away when no process
/// is left in it. A path that is already gone is not an error.
pub fn delete_netns(path: &Path) -> Result<(), NetnsError> {
    if !path.exists() {
        return Ok(());
    }
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) => {}
        Err(e) => return Err(sys_err("unmount", path)(e)),
    }
    fs::remove_file(path).map_err(io_err("remove the mount point of", path))
}

/// Whether `path` is a live network namespace file (a pinned mount or a /proc/PID/ns/net link).
pub fn is_netns(path: &Path) -> bool {
    statfs(path).map(|s| s.filesystem_type() == NSFS_MAGIC).unwrap_or(false)
}

/// The inode that identifies the namespace behind `path`; two paths with the same inode (and
/// device) are the same namespace.
pub fn netns_id(path: &Path) -> Result<(u64, u64), NetnsError> {
    let meta = fs::metadata(path).map_err(io_err("read", path))?;
    Ok((meta.dev(), meta.ino()))
}

/// While alive, the current thread is in another network namespace; dropping it moves the thread
/// back. Use it only on a thread of its own (see [`run_in_netns`]), never on an async worker.
pub struct NetnsGuard {
    original: File,
}

impl NetnsGuard {
    pub fn enter(path: &Path) -> Result<Self, NetnsError> {
        let here = Path::new("/proc/thread-self/ns/net");
        let original = File::open(here).map_err(io_err("open the current", here))?;
        let target = File::open(path).map_err(io_err("open", path))?;
        setns(target.as_fd(), CloneFlags::CLONE_NEWNET).map_err(sys_err("enter", path))?;
        Ok(Self { original })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // Failing to return would leave this thread in the wrong namespace; it is a dedicated
        // thread that ends right after, so aborting the process would be worse than logging.
        if let Err(e) = setns(self.original.as_fd(), CloneFlags::CLONE_NEWNET) {
            tracing::error!("cannot return to the original network namespace: {e}");
        }
    }
}

/// Runs `work` on a new OS thread inside the namespace at `path` and returns its result.
pub fn run_in_netns<T, F>(path: &Path, work: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let target = path.to_owned();
    std::thread::spawn(move || {
        let _guard = NetnsGuard::enter(&target)?;
        Ok(work())
    })
    .join()
    .map_err(|_| NetnsError::ThreadPanicked(path.to_owned()))?
}

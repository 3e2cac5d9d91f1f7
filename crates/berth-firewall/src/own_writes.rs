//! Which nftables changes berth made itself. Every `nft` process berth runs is noted here by
//! pid; nf_tables notifications carry the netlink port id of the process that made the change,
//! and `nft` binds its socket to its own pid (as seen in berth's pid namespace). The change
//! watcher uses this to stay quiet about berth's own writes, so publishing a port does not
//! trigger a full check of berth's table. Shared by the one firewall of a daemon process.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many recent writers are remembered; old pids may be reused by others.
const REMEMBERED: usize = 64;

static WRITERS: Mutex<VecDeque<u32>> = Mutex::new(VecDeque::new());

/// Notes that process `pid` writes nftables on berth's behalf.
pub(crate) fn note_writer(pid: u32) {
    let mut writers = WRITERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if writers.len() == REMEMBERED {
        writers.pop_front();
    }
    writers.push_back(pid);
}

/// Whether a change announced with netlink port id `portid` came from one of berth's writers.
pub(crate) fn is_own(portid: u32) -> bool {
    portid != 0 && WRITERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(&portid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_recent_writers_only() {
        note_writer(4_000_001);
        assert!(is_own(4_000_001));
        assert!(!is_own(0), "kernel-made changes are never berth's");
        for pid in 0..REMEMBERED as u32 {
            note_writer(5_000_000 + pid);
        }
        assert!(!is_own(4_000_001));
    }
}

//! Who holds a host port: reads /proc/net/{tcp,udp}{,6} for a bound socket on the port and
//! /proc/*/fd for the process owning it, to name the holder in a conflict error. Best effort:
//! None when the holder is not visible (another namespace, or gone).

use std::fs;

use berth_types::PortProtocol;

/// `"python3" (pid 1234)` for the process that has `port` bound, if it can be found.
pub fn port_holder(protocol: PortProtocol, port: u16) -> Option<String> {
    let tables: &[&str] = match protocol {
        PortProtocol::Tcp => &["/proc/net/tcp", "/proc/net/tcp6"],
        PortProtocol::Udp => &["/proc/net/udp", "/proc/net/udp6"],
        PortProtocol::Sctp => return None,
    };
    let inode = tables.iter().find_map(|table| socket_inode(&fs::read_to_string(table).ok()?, port))?;
    let wanted = format!("socket:[{inode}]");
    for process in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = process.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let Ok(fds) = fs::read_dir(process.path().join("fd")) else { continue };
        if fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted.as_str())) {
            let name = fs::read_to_string(process.path().join("comm")).unwrap_or_default();
            return Some(format!("{:?} (pid {pid})", name.trim()));
        }
    }
    None
}

/// The inode of a socket bound to `port` (listening for TCP, any state for UDP) in a /proc/net table.
fn socket_inode(table: &str, port: u16) -> Option<u64> {
    let suffix = format!(":{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local = fields.get(1)?;
        let state = fields.get(3)?;
        // TCP: 0A is LISTEN; a closed (07) UDP socket is bound and counts too.
        (local.ends_with(&suffix) && (*state == "0A" || *state == "07")).then(|| fields.get(9)?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_listening_socket_inode() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:0050 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 7777 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(socket_inode(table, 8080), Some(4242));
        assert_eq!(socket_inode(table, 80), None, "an established connection is not the holder");
    }

    #[test]
    fn names_this_process_as_holder_of_its_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = port_holder(PortProtocol::Tcp, port).expect("a holder");
        assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}");
    }
}

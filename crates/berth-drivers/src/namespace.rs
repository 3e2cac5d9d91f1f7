//! The namespace side of a sandbox: create and pin a fresh network namespace with `lo` up, or
//! remove one, and name the next interface in it. Modes that borrow a namespace (host,
//! container:NAME, attached) need nothing else here.

use std::path::Path;

use berth_netlink::Netlink;

use crate::DriverError;

/// Creates the namespace pinned at `path` and brings its loopback up.
pub async fn create_sandbox_netns(path: &Path) -> Result<(), DriverError> {
    berth_sys::netns::create_netns(path)?;
    let brought_up = async {
        let netlink = Netlink::connect_in_netns(path)?;
        if let Some(lo) = netlink.link_by_name("lo").await? {
            netlink.set_up(lo.index).await?;
        }
        Ok::<_, DriverError>(())
    }
    .await;
    if brought_up.is_err() {
        let _ = berth_sys::netns::delete_netns(path);
    }
    brought_up
}

/// Unpins the namespace at `path`; its links go away with it once no process holds it.
pub fn delete_sandbox_netns(path: &Path) -> Result<(), DriverError> {
    Ok(berth_sys::netns::delete_netns(path)?)
}

/// Picks the first `ethN` that is not a link inside the namespace at `netns` yet.
pub async fn free_interface_name(netns: &Path) -> Result<String, DriverError> {
    let inside = Netlink::connect_in_netns(netns)?;
    let taken: Vec<String> = inside.links().await?.into_iter().map(|l| l.name).collect();
    Ok((0..).map(|n| format!("eth{n}")).find(|name| !taken.contains(name)).expect("some ethN is free"))
}

//! The namespace side of a sandbox: create and pin a fresh network namespace with `lo` up, or
//! remove one. Modes that borrow a namespace (host, container:NAME, attached) need nothing here.

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

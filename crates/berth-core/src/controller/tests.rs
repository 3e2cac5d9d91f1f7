//! The controller's transactions with fakes in place of the kernel: a fake host, network driver
//! and firewall that record what they were asked and fail on demand. A command that fails at
//! any step must leave the store and every fake exactly as before; one that succeeds leaves
//! exactly the expected objects. No root needed: the real kernel is the integration tests' job.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_drivers::{DriverError, DriverFuture, Drivers, NetworkDriver};
use berth_firewall::{Dnat, Firewall, FirewallError, Ruleset};
use berth_netlink::Link;
use berth_types::{EndpointRecord, IpamConfig, NetworkCreate, NetworkRecord, PortProtocol, BRIDGE_DRIVER};
use socket2::{Domain, Socket, Type};

use super::{Backends, Controller, DaemonSettings, Paths};
use crate::host::{Host, PrefixesFuture};

/// What the fakes hold, shared with the test.
#[derive(Debug, Default)]
struct Kernel {
    /// Bridges of the networks the driver made.
    bridges: BTreeSet<String>,
    /// The networks (by bridge) in the last ruleset the firewall applied.
    applied: Option<BTreeSet<String>>,
    fail_create_network: bool,
    fail_delete_network: bool,
    fail_firewall: bool,
}

type Shared = Arc<Mutex<Kernel>>;

/// Turns one injected failure on or off.
type Injection = fn(&mut Kernel, bool);

#[derive(Debug)]
struct FakeHost;

impl Host for FakeHost {
    fn taken_prefixes(&self) -> PrefixesFuture<'_> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn netns_path(&self) -> String {
        "/proc/self/ns/net".into()
    }

    fn bind_port(&self, _: PortProtocol, ip: IpAddr, _: u16, _: bool) -> io::Result<Socket> {
        Socket::new(if ip.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 }, Type::STREAM, None)
    }

    fn ephemeral_ports(&self) -> (u16, u16) {
        (40000, 40100)
    }

    fn port_holder(&self, _: PortProtocol, _: u16) -> Option<String> {
        None
    }

    fn set_sysctl(&self, _: &str, _: &str) -> io::Result<()> {
        Ok(())
    }

    fn forget_udp_flows(&self, _: &[Dnat]) {}
}

#[derive(Debug)]
struct FakeDriver(Shared);

impl NetworkDriver for FakeDriver {
    fn name(&self) -> &'static str {
        BRIDGE_DRIVER
    }

    fn create_network<'a>(&'a self, network: &'a NetworkRecord) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let mut kernel = self.0.lock().unwrap();
            if kernel.fail_create_network {
                return Err(DriverError::Conflict("injected: cannot create the bridge".into()));
            }
            kernel.bridges.insert(network.bridge.clone());
            Ok(())
        })
    }

    fn delete_network<'a>(&'a self, network: &'a NetworkRecord) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let mut kernel = self.0.lock().unwrap();
            if kernel.fail_delete_network {
                return Err(DriverError::Conflict("injected: cannot delete the bridge".into()));
            }
            kernel.bridges.remove(&network.bridge);
            Ok(())
        })
    }

    fn join<'a>(&'a self, _: &'a NetworkRecord, _: &'a EndpointRecord, _: &'a Path, _: bool) -> DriverFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn peer_mac<'a>(&'a self, _: &'a EndpointRecord, _: &'a Path) -> DriverFuture<'a, String> {
        Box::pin(async { Ok(String::new()) })
    }

    fn endpoint_exists<'a>(&'a self, _: &'a EndpointRecord) -> DriverFuture<'a, bool> {
        Box::pin(async { Ok(true) })
    }

    fn leave<'a>(&'a self, _: &'a EndpointRecord) -> DriverFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn own_links(&self) -> DriverFuture<'_, Vec<Link>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn delete_link<'a>(&'a self, _: &'a Link) -> DriverFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
}

#[derive(Debug)]
struct FakeFirewall(Shared);

impl Firewall for FakeFirewall {
    fn apply(&self, ruleset: &Ruleset) -> Result<(), FirewallError> {
        let mut kernel = self.0.lock().unwrap();
        if kernel.fail_firewall {
            return Err(FirewallError::Nft { action: "apply (injected)".into(), message: "refused".into() });
        }
        kernel.applied = Some(ruleset.networks.iter().map(|n| n.bridge.clone()).collect());
        Ok(())
    }

    fn add_dnats(&self, _: &[Dnat]) -> Result<(), FirewallError> {
        Ok(())
    }

    fn remove_dnats(&self, _: &[Dnat]) -> Result<(), FirewallError> {
        Ok(())
    }

    fn matches(&self, _: &Ruleset) -> Result<bool, FirewallError> {
        Ok(true)
    }
}

/// A controller over a fresh store in a temporary directory, with fakes for everything else.
struct Fixture {
    controller: Controller,
    kernel: Shared,
    dir: PathBuf,
}

impl Fixture {
    async fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("berth-core-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let kernel = Shared::default();
        let backends = Backends {
            host: Box::new(FakeHost),
            drivers: Drivers::with(vec![Box::new(FakeDriver(kernel.clone()))]),
            firewall: Box::new(FakeFirewall(kernel.clone())),
        };
        let store = berth_store::Store::open(&dir.join("state.redb")).unwrap();
        let resolver = berth_dns::Resolver::new(berth_dns::server::ResolverConfig::default()).unwrap();
        let paths = Paths::new(&dir.join("data"), &dir.join("run"));
        let controller =
            Controller::start(store, paths, backends, None, resolver, None, DaemonSettings::default()).await.unwrap();
        Self { controller, kernel, dir }
    }

    /// Networks (by name) in the store, bridges in the fake driver, bridges in the last
    /// applied ruleset.
    fn everything(&self) -> (Vec<String>, BTreeSet<String>, Option<BTreeSet<String>>) {
        let stored = self.controller.store.load().unwrap().networks.into_iter().map(|n| n.name).collect();
        let kernel = self.kernel.lock().unwrap();
        (stored, kernel.bridges.clone(), kernel.applied.clone())
    }

    fn set(&self, change: impl FnOnce(&mut Kernel)) {
        change(&mut self.kernel.lock().unwrap());
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn create(name: &str, subnet: &str) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        ipam_config: vec![IpamConfig { subnet: Some(subnet.into()), ..IpamConfig::default() }],
        ..NetworkCreate::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_network_is_in_the_driver_the_firewall_and_the_store() {
    let fixture = Fixture::new("create").await;
    let network = fixture.controller.create_network(create("n1", "10.1.0.0/24")).await.unwrap();
    let bridge = format!("br-{}", &network.id[..12]);
    let (stored, bridges, applied) = fixture.everything();
    assert_eq!(stored, ["n1"]);
    assert_eq!(bridges, BTreeSet::from([bridge.clone()]));
    assert_eq!(applied, Some(BTreeSet::from([bridge])));

    fixture.controller.remove_network("n1").await.unwrap();
    assert_eq!(fixture.everything(), (Vec::new(), BTreeSet::new(), Some(BTreeSet::new())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_fails_at_any_step_leaves_everything_as_it_was() {
    let fixture = Fixture::new("create-fails").await;
    fixture.controller.create_network(create("kept", "10.2.0.0/24")).await.unwrap();
    let before = fixture.everything();
    let injections: [(&str, Injection); 2] =
        [("the driver", |k, on| k.fail_create_network = on), ("the firewall", |k, on| k.fail_firewall = on)];
    for (step, inject) in injections {
        fixture.set(|k| inject(k, true));
        let error = fixture.controller.create_network(create("n2", "10.3.0.0/24")).await.unwrap_err();
        assert!(error.to_string().contains("injected") || error.to_string().contains("refused"), "{step}: {error}");
        fixture.set(|k| inject(k, false));
        // The firewall's failed apply left its last ruleset in place; the undo re-applied it.
        assert_eq!(fixture.everything(), before, "a failure in {step} left something behind");
        assert_eq!(fixture.controller.list_networks().await.len(), 1, "{step}");
    }
    // And the name, subnet and bridge are free again.
    fixture.controller.create_network(create("n2", "10.3.0.0/24")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remove_the_driver_refuses_changes_nothing() {
    let fixture = Fixture::new("remove-fails").await;
    fixture.controller.create_network(create("n1", "10.4.0.0/24")).await.unwrap();
    let before = fixture.everything();
    fixture.set(|k| k.fail_delete_network = true);
    assert!(fixture.controller.remove_network("n1").await.is_err());
    assert_eq!(fixture.everything(), before);
    assert_eq!(fixture.controller.list_networks().await.len(), 1);
}

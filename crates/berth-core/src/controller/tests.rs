//! The controller's transactions with fakes in place of the kernel: a fake host, network driver
//! and firewall that record what they were asked and fail on demand, and a real store in a
//! temporary directory that refuses commits on demand. A command that fails at any step must
//! leave the store and every fake exactly as before; one that succeeds leaves exactly the
//! expected objects. No root needed: the real kernel is the integration tests' job.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_drivers::{DriverError, DriverFuture, Drivers, NetworkDriver};
use berth_firewall::{Dnat, Firewall, FirewallError, NetworkPolicy, RoutedPort, Ruleset};
use berth_netlink::Link;
use berth_types::{
    EndpointRecord, IpamConfig, NetworkConnect, NetworkCreate, NetworkDisconnect, NetworkRecord, PortProtocol,
    PortSpec, PortsChange, ResolverPorts, SandboxCreate, BRIDGE_DRIVER,
};
use ipnet::IpNet;
use socket2::{Domain, Socket, Type};

use super::{Backends, Controller, DaemonSettings, DefaultNetwork, Paths};
use crate::error::Result;
use crate::host::{Host, HostFuture, ResolverSockets};

/// What the fakes hold, shared with the test.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Kernel {
    /// Bridges of the networks the driver made.
    bridges: BTreeSet<String>,
    /// Host-side names of the endpoints the driver joined.
    endpoints: BTreeSet<String>,
    /// Sandbox namespaces the host made.
    namespaces: BTreeSet<PathBuf>,
    /// The networks (by bridge) in the last ruleset the firewall applied.
    applied: Option<BTreeSet<String>>,
    /// DNAT entries in the firewall, as text.
    dnats: BTreeSet<String>,
    routed_ports: BTreeSet<RoutedPort>,
    faults: Faults,
}

/// Injected failures.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Faults {
    create_network: bool,
    delete_network: bool,
    join: bool,
    create_netns: bool,
    open_resolver: bool,
    apply: bool,
    add_dnats: bool,
}

type Shared = Arc<Mutex<Kernel>>;

/// Turns one injected failure on or off.
type Injection = fn(&mut Faults, bool);

fn injected(what: &str) -> DriverError {
    DriverError::Conflict(format!("injected: {what}"))
}

#[derive(Debug)]
struct FakeHost(Shared);

impl Host for FakeHost {
    fn taken_prefixes(&self) -> HostFuture<'_, Vec<IpNet>> {
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

    fn create_netns<'a>(&'a self, path: &'a Path) -> HostFuture<'a, ()> {
        Box::pin(async move {
            let mut kernel = self.0.lock().unwrap();
            if kernel.faults.create_netns {
                return Err(injected("cannot create the namespace").into());
            }
            kernel.namespaces.insert(path.to_owned());
            Ok(())
        })
    }

    fn delete_netns(&self, path: &Path) -> Result<()> {
        self.0.lock().unwrap().namespaces.remove(path);
        Ok(())
    }

    fn free_interface_name<'a>(&'a self, _: &'a Path) -> HostFuture<'a, String> {
        Box::pin(async { Ok("eth1".to_owned()) })
    }

    /// Sockets on 127.0.0.1 in the test's own namespace, with no redirect to write.
    fn open_resolver(&self, _: &Path, _: Option<ResolverPorts>, _: bool) -> Result<ResolverSockets, String> {
        if self.0.lock().unwrap().faults.open_resolver {
            return Err("injected: cannot open the resolver".into());
        }
        let udp = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let tcp = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        udp.set_nonblocking(true).and_then(|()| tcp.set_nonblocking(true)).map_err(|e| e.to_string())?;
        let port = |address: io::Result<SocketAddr>| address.map(|a| a.port()).map_err(|e| e.to_string());
        let ports = ResolverPorts { udp: port(udp.local_addr())?, tcp: port(tcp.local_addr())? };
        Ok(ResolverSockets { udp, tcp, ports, redirect: None })
    }

    fn forget_udp_flows(&self, _: &[Dnat]) {}
}

#[derive(Debug)]
struct FakeDriver(Shared);

impl NetworkDriver for FakeDriver {
    fn name(&self) -> &'static str {
        BRIDGE_DRIVER
    }

    fn plan_network(&self, network: &mut NetworkRecord, _: &[&NetworkRecord]) -> Result<(), DriverError> {
        let name = network.options.get(berth_types::OPTION_BRIDGE_NAME);
        network.driver_state.bridge = name.cloned().unwrap_or_else(|| format!("br-{}", &network.id[..12]));
        Ok(())
    }

    fn plan_endpoint(&self, endpoint: &mut EndpointRecord) {
        endpoint.driver_state.host_veth = format!("bth{}", &endpoint.id[..8]);
    }

    fn create_network<'a>(&'a self, network: &'a NetworkRecord) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let mut kernel = self.0.lock().unwrap();
            if kernel.faults.create_network {
                return Err(injected("cannot create the bridge"));
            }
            kernel.bridges.insert(network.driver_state.bridge.clone());
            Ok(())
        })
    }

    fn firewall_policy(&self, network: &NetworkRecord) -> NetworkPolicy {
        NetworkPolicy {
            name: network.name.clone(),
            bridge: network.driver_state.bridge.clone(),
            subnets: network.subnets.iter().map(|s| s.subnet).collect(),
            internal: network.internal,
            unmasqueraded: Vec::new(),
        }
    }

    fn delete_network<'a>(&'a self, network: &'a NetworkRecord) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let mut kernel = self.0.lock().unwrap();
            if kernel.faults.delete_network {
                return Err(injected("cannot delete the bridge"));
            }
            kernel.bridges.remove(&network.driver_state.bridge);
            Ok(())
        })
    }

    fn join<'a>(
        &'a self,
        _: &'a NetworkRecord,
        endpoint: &'a EndpointRecord,
        _: &'a Path,
        _: bool,
    ) -> DriverFuture<'a, String> {
        Box::pin(async move {
            let mut kernel = self.0.lock().unwrap();
            if kernel.faults.join {
                return Err(injected("cannot make the veth pair"));
            }
            kernel.endpoints.insert(endpoint.driver_state.host_veth.clone());
            Ok(endpoint.mac.clone())
        })
    }

    fn endpoint_exists<'a>(&'a self, endpoint: &'a EndpointRecord) -> DriverFuture<'a, bool> {
        Box::pin(async move { Ok(self.0.lock().unwrap().endpoints.contains(&endpoint.driver_state.host_veth)) })
    }

    fn leave<'a>(&'a self, endpoint: &'a EndpointRecord) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            self.0.lock().unwrap().endpoints.remove(&endpoint.driver_state.host_veth);
            Ok(())
        })
    }

    fn own_links(&self) -> DriverFuture<'_, Vec<Link>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn remove_orphans<'a>(
        &'a self,
        _: &'a [&'a NetworkRecord],
        _: &'a [&'a EndpointRecord],
    ) -> DriverFuture<'a, Vec<String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// Keeps what it is given like berth's nftables table: an apply replaces everything, DNAT
/// entries and routed ports are added and removed as elements (removing a missing one fails).
#[derive(Debug)]
struct FakeFirewall(Shared);

fn refused(action: &str) -> FirewallError {
    FirewallError::Nft { action: format!("{action} (injected)"), message: "refused".into() }
}

impl Firewall for FakeFirewall {
    fn apply(&self, ruleset: &Ruleset) -> Result<(), FirewallError> {
        let mut kernel = self.0.lock().unwrap();
        if kernel.faults.apply {
            return Err(refused("apply"));
        }
        kernel.applied = Some(ruleset.networks.iter().map(|n| n.bridge.clone()).collect());
        kernel.dnats = ruleset.dnats.iter().map(Dnat::to_string).collect();
        kernel.routed_ports = ruleset.routed_ports.iter().copied().collect();
        Ok(())
    }

    fn add_dnats(&self, dnats: &[Dnat]) -> Result<(), FirewallError> {
        let mut kernel = self.0.lock().unwrap();
        if kernel.faults.add_dnats {
            return Err(refused("add DNAT entries"));
        }
        kernel.dnats.extend(dnats.iter().map(Dnat::to_string));
        Ok(())
    }

    fn remove_dnats(&self, dnats: &[Dnat]) -> Result<(), FirewallError> {
        let mut kernel = self.0.lock().unwrap();
        if dnats.iter().any(|d| !kernel.dnats.contains(&d.to_string())) {
            return Err(refused("remove a DNAT entry that is not there"));
        }
        for dnat in dnats {
            kernel.dnats.remove(&dnat.to_string());
        }
        Ok(())
    }

    fn add_routed_ports(&self, ports: &[RoutedPort]) -> Result<(), FirewallError> {
        self.0.lock().unwrap().routed_ports.extend(ports);
        Ok(())
    }

    fn remove_routed_ports(&self, ports: &[RoutedPort]) -> Result<(), FirewallError> {
        let mut kernel = self.0.lock().unwrap();
        if ports.iter().any(|p| !kernel.routed_ports.contains(p)) {
            return Err(refused("close a routed port that is not open"));
        }
        for port in ports {
            kernel.routed_ports.remove(port);
        }
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

/// Everything a command may change: the store's records (networks by name; sandboxes by name
/// with their published ports) and what the fakes hold.
#[derive(Debug, PartialEq, Eq)]
struct World {
    networks: Vec<String>,
    sandboxes: Vec<(String, Vec<String>)>,
    kernel: Kernel,
    files: Vec<String>,
}

impl Fixture {
    async fn new(name: &str) -> Self {
        Self::start(name, None).await
    }

    /// With Docker's default network `bridge` on 172.17.0.0/16 (no embedded DNS on it, so its
    /// sandboxes need no resolver in their namespace).
    async fn with_default_network(name: &str) -> Self {
        Self::start(name, Some(DefaultNetwork { subnet: "172.17.0.0/16".parse().unwrap() })).await
    }

    async fn start(name: &str, default_network: Option<DefaultNetwork>) -> Self {
        let dir = std::env::temp_dir().join(format!("berth-core-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let kernel = Shared::default();
        let backends = Backends {
            host: Arc::new(FakeHost(kernel.clone())),
            drivers: Drivers::with(vec![Box::new(FakeDriver(kernel.clone()))]),
            firewall: Box::new(FakeFirewall(kernel.clone())),
        };
        let store = berth_store::Store::open(&dir.join("state.redb")).unwrap();
        let resolver = berth_dns::Resolver::new(berth_dns::server::ResolverConfig::default()).unwrap();
        let paths = Paths::new(&dir.join("data"), &dir.join("run"));
        let controller =
            Controller::start(store, paths, backends, None, resolver, default_network, DaemonSettings::default())
                .await
                .unwrap();
        Self { controller, kernel, dir }
    }

    fn world(&self) -> World {
        let snapshot = self.controller.store.load().unwrap();
        let mut sandboxes: Vec<(String, Vec<String>)> = snapshot
            .sandboxes
            .into_iter()
            .map(|s| (s.name, s.ports.iter().map(ToString::to_string).collect()))
            .collect();
        sandboxes.sort();
        let mut files: Vec<String> = std::fs::read_dir(&self.controller.paths.sandboxes_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        World {
            networks: snapshot.networks.into_iter().map(|n| n.name).collect(),
            sandboxes,
            kernel: Kernel { faults: Faults::default(), ..self.kernel.lock().unwrap().clone() },
            files,
        }
    }

    /// Networks (by name) in the store, bridges in the fake driver, bridges in the last
    /// applied ruleset.
    fn networks(&self) -> (Vec<String>, BTreeSet<String>, Option<BTreeSet<String>>) {
        let world = self.world();
        (world.networks, world.kernel.bridges, world.kernel.applied)
    }

    fn set(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.kernel.lock().unwrap().faults);
    }

    /// Runs `command` once per injected failure (the fake steps, then the store's commit) and
    /// checks that each failure leaves the world as it was.
    async fn check_rollback<F, Fut, T>(&self, what: &str, injections: &[(&str, Injection)], command: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
        T: std::fmt::Debug,
    {
        let before = self.world();
        for (step, inject) in injections {
            self.set(|f| inject(f, true));
            let outcome = command().await;
            self.set(|f| inject(f, false));
            let error = outcome.expect_err(&format!("{what} with a failing {step} succeeded"));
            assert!(error.to_string().contains("injected"), "{what}, {step}: {error}");
            assert_eq!(self.world(), before, "{what}: a failure in {step} left something behind");
        }
        self.controller.store.refuse_commits(true);
        let outcome = command().await;
        self.controller.store.refuse_commits(false);
        let error = outcome.expect_err(&format!("{what} with a refused commit succeeded"));
        assert!(error.to_string().contains("injected"), "{what}, commit: {error}");
        assert_eq!(self.world(), before, "{what}: a refused commit left something behind");
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

fn sandbox(name: &str, ports: &[&str]) -> SandboxCreate {
    SandboxCreate {
        name: name.into(),
        ports: ports.iter().map(|p| PortSpec::parse(p).unwrap()).collect(),
        ..SandboxCreate::default()
    }
}

fn ports(specs: &[&str]) -> PortsChange {
    PortsChange { ports: specs.iter().map(|p| PortSpec::parse(p).unwrap()).collect() }
}

fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_network_is_in_the_driver_the_firewall_and_the_store() {
    let fixture = Fixture::new("create").await;
    let network = fixture.controller.create_network(create("n1", "10.1.0.0/24")).await.unwrap();
    let bridge = format!("br-{}", &network.id[..12]);
    let (stored, bridges, applied) = fixture.networks();
    assert_eq!(stored, ["n1"]);
    assert_eq!(bridges, BTreeSet::from([bridge.clone()]));
    assert_eq!(applied, Some(BTreeSet::from([bridge])));

    fixture.controller.remove_network("n1").await.unwrap();
    assert_eq!(fixture.networks(), (Vec::new(), BTreeSet::new(), Some(BTreeSet::new())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_create_that_fails_at_any_step_leaves_everything_as_it_was() {
    let fixture = Fixture::new("create-fails").await;
    fixture.controller.create_network(create("kept", "10.2.0.0/24")).await.unwrap();
    let injections: [(&str, Injection); 2] =
        [("driver", |f, on| f.create_network = on), ("firewall", |f, on| f.apply = on)];
    fixture
        .check_rollback("network create", &injections, || {
            fixture.controller.create_network(create("n2", "10.3.0.0/24"))
        })
        .await;
    assert_eq!(fixture.controller.list_networks().await.len(), 1);
    // And the name, subnet and bridge are free again.
    fixture.controller.create_network(create("n2", "10.3.0.0/24")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_remove_the_driver_refuses_changes_nothing() {
    let fixture = Fixture::new("remove-fails").await;
    fixture.controller.create_network(create("n1", "10.4.0.0/24")).await.unwrap();
    let before = fixture.world();
    fixture.set(|f| f.delete_network = true);
    assert!(fixture.controller.remove_network("n1").await.is_err());
    assert_eq!(fixture.world(), before);
    assert_eq!(fixture.controller.list_networks().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_with_ports_is_in_the_store_the_driver_and_the_firewall_until_removed() {
    let fixture = Fixture::with_default_network("sandbox").await;
    let empty = fixture.world();
    let view = fixture.controller.create_sandbox(sandbox("web", &["8080:80", "127.0.0.1:5353:53/udp"])).await.unwrap();
    let world = fixture.world();
    let recorded = vec!["80/tcp -> 0.0.0.0:8080".to_owned(), "53/udp -> 127.0.0.1:5353".to_owned()];
    assert_eq!(world.sandboxes, [("web".to_owned(), recorded)]);
    assert_eq!(world.kernel.namespaces.len(), 1, "its namespace");
    assert_eq!(world.kernel.endpoints.len(), 1, "its endpoint on the default network");
    assert_eq!(
        world.kernel.dnats,
        strings(&["*:8080/tcp -> 172.17.0.2:80", "127.0.0.1:5353/udp -> 172.17.0.2:53"]),
        "one DNAT entry per mapping, to its IPv4 address"
    );
    assert_eq!(world.files, [view.id], "its hosts and resolv.conf");

    fixture.controller.remove_sandbox("web", false).await.unwrap();
    assert_eq!(fixture.world(), empty, "removing it leaves what was there before it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_create_that_fails_at_any_step_leaves_everything_as_it_was() {
    let fixture = Fixture::with_default_network("sandbox-fails").await;
    fixture.controller.create_sandbox(sandbox("kept", &["9000:90"])).await.unwrap();
    let injections: [(&str, Injection); 3] = [
        ("namespace", |f, on| f.create_netns = on),
        ("driver", |f, on| f.join = on),
        ("firewall", |f, on| f.add_dnats = on),
    ];
    fixture
        .check_rollback("sandbox create", &injections, || {
            fixture.controller.create_sandbox(sandbox("web", &["8080:80", "8443:443"]))
        })
        .await;
    // The name and the host ports are free again.
    fixture.controller.create_sandbox(sandbox("web", &["8080:80", "8443:443"])).await.unwrap();
    assert_eq!(fixture.world().kernel.dnats.len(), 3, "{:?}", fixture.world().kernel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_unpublishing_change_exactly_their_ports_or_nothing() {
    let fixture = Fixture::with_default_network("publish").await;
    fixture.controller.create_sandbox(sandbox("web", &["8080:80"])).await.unwrap();
    let injections: [(&str, Injection); 1] = [("firewall", |f, on| f.add_dnats = on)];
    fixture
        .check_rollback("publish", &injections, || fixture.controller.publish_ports("web", ports(&["9090:90"])))
        .await;

    fixture.controller.publish_ports("web", ports(&["9090:90", "7000-7001:7000-7001/udp"])).await.unwrap();
    let world = fixture.world();
    assert_eq!(
        world.sandboxes[0].1,
        ["80/tcp -> 0.0.0.0:8080", "90/tcp -> 0.0.0.0:9090", "7000-7001/udp -> 0.0.0.0:7000-7001"]
    );
    assert_eq!(
        world.kernel.dnats,
        strings(&[
            "*:8080/tcp -> 172.17.0.2:80",
            "*:9090/tcp -> 172.17.0.2:90",
            "*:7000-7001/udp -> 172.17.0.2:7000-7001"
        ])
    );
    let conflict = fixture.controller.publish_ports("web", ports(&["9090:91"])).await.unwrap_err();
    assert!(conflict.to_string().contains("already published by sandbox web"), "{conflict}");

    fixture.check_rollback("unpublish", &[], || fixture.controller.unpublish_ports("web", ports(&["9090:90"]))).await;
    fixture.controller.unpublish_ports("web", ports(&["9090:90"])).await.unwrap();
    let world = fixture.world();
    assert_eq!(world.sandboxes[0].1, ["80/tcp -> 0.0.0.0:8080", "7000-7001/udp -> 0.0.0.0:7000-7001"]);
    assert_eq!(
        world.kernel.dnats,
        strings(&["*:8080/tcp -> 172.17.0.2:80", "*:7000-7001/udp -> 172.17.0.2:7000-7001"])
    );
    // The unpublished host port can be published again.
    fixture.controller.publish_ports("web", ports(&["9090:92"])).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_publishes_the_recorded_ports_again() {
    let fixture = Fixture::with_default_network("restart").await;
    fixture.controller.create_sandbox(sandbox("web", &["8080:80", "5353:53/udp"])).await.unwrap();
    let published = fixture.world().kernel.dnats;
    fixture.kernel.lock().unwrap().dnats.clear();
    let state = &mut *fixture.controller.state.lock().await;
    fixture.controller.restore_ports(state);
    fixture.controller.apply_firewall(state).unwrap();
    assert_eq!(fixture.world().kernel.dnats, published, "the whole ruleset holds every recorded mapping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_disconnect_change_everything_or_nothing_and_ports_follow_the_sandbox() {
    let fixture = Fixture::with_default_network("connect").await;
    fixture.controller.create_network(create("n1", "10.5.0.0/24")).await.unwrap();
    fixture.controller.create_sandbox(sandbox("web", &["8080:80"])).await.unwrap();
    let to = || NetworkConnect { container: "web".into(), ..NetworkConnect::default() };
    let injections: [(&str, Injection); 2] =
        [("driver", |f, on| f.join = on), ("resolver", |f, on| f.open_resolver = on)];
    fixture.check_rollback("connect", &injections, || fixture.controller.connect("n1", to())).await;

    fixture.controller.connect("n1", to()).await.unwrap();
    let world = fixture.world();
    assert_eq!(world.kernel.endpoints.len(), 2, "an endpoint on each network");
    assert_eq!(world.kernel.dnats, strings(&["*:8080/tcp -> 172.17.0.2:80"]), "ports lead to the first network");

    let away = || NetworkDisconnect { container: "web".into() };
    fixture.check_rollback("disconnect", &[], || fixture.controller.disconnect("bridge", away())).await;
    fixture.controller.disconnect("bridge", away()).await.unwrap();
    let world = fixture.world();
    assert_eq!(world.kernel.endpoints.len(), 1);
    let dnats: Vec<&String> = world.kernel.dnats.iter().collect();
    assert!(
        dnats.len() == 1 && dnats[0].starts_with("*:8080/tcp -> 10.5.0."),
        "the ports followed the sandbox to its other network: {dnats:?}"
    );

    fixture.controller.disconnect("n1", away()).await.unwrap();
    let world = fixture.world();
    assert!(world.kernel.dnats.is_empty() && world.kernel.endpoints.is_empty(), "{:?}", world.kernel);
    assert_eq!(world.sandboxes[0].1, ["80/tcp -> 0.0.0.0:8080"], "the mapping stays recorded");
    fixture.controller.connect("n1", to()).await.unwrap();
    assert_eq!(fixture.world().kernel.dnats.len(), 1, "and leads to the sandbox again once it has a network");
}

//! Sandbox commands: create (run, attach), connect and disconnect networks, register processes,
//! stop and remove. A sandbox is a network namespace plus its endpoints and its files; the
//! processes in it are started by the CLI and only registered here.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_store::Change;
use berth_sys::process_identity::{descends_from, proc_stat, PinnedProcess};
use berth_types::{
    validate_name, EndpointDriverState, EndpointRecord, MacAddress, NetworkConnect, NetworkDisconnect, NetworkMode,
    NetworkRecord, ProcessRecord, ProcessRegister, RequestedAddresses, Sandbox, SandboxCreate, SandboxMode,
    SandboxRecord, DEFAULT_NETWORK,
};
use ipnet::{Ipv4Net, Ipv6Net};
use nix::sys::signal::Signal;

use super::dns::{check_dns_options, check_dns_search, has_names, parse_extra_hosts};
use super::events::Action;
use super::{Controller, State};
use crate::error::{Error, Result};
use crate::ids;
use crate::ports::{port_specs, Destination};
use crate::sandbox_files::remove_sandbox_files;

/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a `--rm` sandbox may wait for its main process to be registered (the CLI does it
/// right after creating the sandbox) before it is taken for abandoned and removed.
const MAIN_PROCESS_GRACE: Duration = Duration::from_secs(10);

/// Registered processes of `sandbox` that still run in its namespace, each pinned so that a
/// signal reaches it and never a process that got its pid later.
pub(super) fn running_processes(sandbox: &SandboxRecord) -> Vec<(u32, PinnedProcess)> {
    let Ok(netns) = berth_sys::netns::netns_id(Path::new(&sandbox.netns_path)) else {
        return Vec::new();
    };
    sandbox
        .processes
        .iter()
        .filter_map(|p| Some((p.pid, PinnedProcess::open(p.pid, p.start_time)?)))
        .filter(|(pid, _)| {
            berth_sys::netns::netns_id(Path::new(&format!("/proc/{pid}/ns/net"))).is_ok_and(|id| id == netns)
        })
        .collect()
}

/// The pids of [`running_processes`].
pub(super) fn live_pids(sandbox: &SandboxRecord) -> Vec<u32> {
    running_processes(sandbox).into_iter().map(|(pid, _)| pid).collect()
}

/// Checks that `pid` may join `sandbox`'s processes, on behalf of the API client `caller` (its
/// pid, from the socket's credentials), and names it: it must be a process the caller started
/// (the caller or a descendant), never pid 1 or berthd, and run in the sandbox's namespace
/// (unless it is already exiting).
fn identify_process(sandbox: &SandboxRecord, pid: u32, caller: Option<u32>) -> Result<ProcessRecord> {
    if pid == 0 {
        return Err(Error::BadRequest("invalid pid 0: a process id is expected".into()));
    }
    if pid == 1 || pid == std::process::id() {
        return Err(Error::Forbidden(format!("process {pid} cannot be registered with a sandbox")));
    }
    let stat = proc_stat(pid).map_err(|_| Error::BadRequest(format!("no process with pid {pid}")))?;
    match caller {
        Some(caller) if caller != 0 && descends_from(pid, caller) => {}
        _ => {
            return Err(Error::Forbidden(format!(
                "process {pid} was not started by the caller: only a process the client started (or the client itself) can be registered"
            )))
        }
    }
    // A command that ends at once is still its client's unreaped child; once it is exiting its
    // namespace can no longer be read (the kernel drops it before the process becomes a
    // zombie). Such a process is registered: it never counts as running nor gets signalled.
    // One whose namespace can be read must be in the sandbox's.
    let sandbox_ns = berth_sys::netns::netns_id(Path::new(&sandbox.netns_path))?;
    let in_sandbox = match berth_sys::netns::netns_id(Path::new(&format!("/proc/{pid}/ns/net"))) {
        Ok(process_ns) => process_ns == sandbox_ns,
        Err(_) => true,
    };
    if !in_sandbox {
        return Err(Error::BadRequest(format!(
            "process {pid} does not run in sandbox {}'s network namespace",
            sandbox.name
        )));
    }
    Ok(ProcessRecord { pid, start_time: stat.start_time })
}

/// What a request asks of a new endpoint; IPAM and Docker's MAC rule fill in the rest.
#[derive(Debug, Clone, Copy)]
struct WantedEndpoint {
    ipv4: Option<IpAddr>,
    ipv6: Option<IpAddr>,
    mac: Option<MacAddress>,
}

/// A sandbox being made: what must be undone if a later step fails.
struct SandboxDraft {
    record: SandboxRecord,
    created_netns: bool,
    /// Whether its ports are published (withdrawn on failure).
    published: bool,
    /// Dropping it (on failure) closes the resolver's sockets.
    resolver_listener: Option<berth_dns::SandboxListener>,
}

impl Controller {
    pub async fn list_sandboxes(&self) -> Vec<Sandbox> {
        let state = self.state.lock().await;
        state.sandboxes.values().map(|s| state.sandbox_view(s)).collect()
    }

    pub async fn inspect_sandbox(&self, key: &str) -> Result<Sandbox> {
        let state = self.state.lock().await;
        Ok(state.sandbox_view(state.sandbox(key)?))
    }

    pub async fn create_sandbox(&self, request: SandboxCreate) -> Result<Sandbox> {
        let mut state = self.state.lock().await;
        let name = if request.name.is_empty() {
            unused_name(&state)
        } else {
            validate_name("sandbox", &request.name).map_err(Error::BadRequest)?;
            if state.sandboxes.values().any(|s| s.name == request.name) {
                return Err(Error::Conflict(format!("sandbox name {} is already in use", request.name)));
            }
            request.name.clone()
        };
        let id = ids::new_id();
        let hostname = if request.hostname.is_empty() { id[..12].to_owned() } else { request.hostname.clone() };
        validate_name("hostname", &hostname).map_err(Error::BadRequest)?;
        let (ipv4, ipv6) = (request.ipv4_address, request.ipv6_address);
        let mac = request.mac_address;
        let dns_servers = request
            .dns
            .iter()
            .map(|t| {
                t.parse()
                    .map_err(|_| Error::BadRequest(format!("invalid --dns address {t:?}: an IP address is expected")))
            })
            .collect::<Result<Vec<IpAddr>>>()?;
        check_dns_search(&request.dns_search)?;
        check_dns_options(&request.dns_options)?;
        let host_gateway = state.network(DEFAULT_NETWORK).ok().and_then(|n| n.subnet_v4()).map(|s| s.gateway);
        let extra_hosts = parse_extra_hosts(&request.extra_hosts, host_gateway)?;

        let mode_text = request.network_mode.as_ref().map(ToString::to_string).unwrap_or_default();
        let network_of = |network: Option<&str>| state.network(network.unwrap_or(DEFAULT_NETWORK)).cloned();
        let (mode, netns_path, network) = match (request.netns.as_deref(), &request.network_mode) {
            (Some(path), mode) => {
                check_attachable(&state, &self.host.netns_path(), path)?;
                let network = match mode {
                    None | Some(NetworkMode::Network(_)) => network_of(mode.as_ref().and_then(NetworkMode::network))?,
                    Some(other) => {
                        return Err(Error::BadRequest(format!(
                            "an attached namespace joins a network, not network mode {other}"
                        )))
                    }
                };
                (SandboxMode::Attached, path.to_owned(), Some(network))
            }
            (None, Some(NetworkMode::Host)) => (SandboxMode::Host, self.host.netns_path(), None),
            (None, Some(NetworkMode::None)) => (SandboxMode::None, self.netns_path_for(&id), None),
            (None, Some(NetworkMode::Container(target))) => {
                let target = state.sandbox(target)?;
                (SandboxMode::Container(target.id.clone()), target.netns_path.clone(), None)
            }
            (None, mode @ (None | Some(NetworkMode::Network(_)))) => {
                let network = network_of(mode.as_ref().and_then(NetworkMode::network))?;
                (SandboxMode::Networked, self.netns_path_for(&id), Some(network))
            }
        };
        if matches!(mode, SandboxMode::Container(_))
            && !(dns_servers.is_empty()
                && request.dns_search.is_empty()
                && request.dns_options.is_empty()
                && extra_hosts.is_empty())
        {
            return Err(Error::BadRequest(format!(
                "--dns, --dns-search, --dns-option and --add-host cannot be used with network mode {mode_text}: the sandbox uses its target's resolver settings and hosts"
            )));
        }
        if network.is_none() && (ipv4.is_some() || ipv6.is_some()) {
            return Err(Error::BadRequest(format!("--ip needs a network; network mode {mode_text} has none")));
        }
        if network.is_none() && mac.is_some() {
            return Err(Error::BadRequest(format!("--mac-address needs a network; network mode {mode_text} has none")));
        }
        if !request.aliases.is_empty() {
            check_aliases(network.as_ref(), &request.aliases)?;
        }
        let record = SandboxRecord {
            config_dir: self.paths.sandboxes_dir.join(&id).display().to_string(),
            id,
            name,
            hostname,
            created: ids::now_rfc3339(),
            mode,
            netns_path,
            endpoints: Vec::new(),
            processes: Vec::new(),
            main_pid: None,
            auto_remove: request.auto_remove,
            ports: Vec::new(),
            resolver: None,
            dns_servers,
            dns_search: request.dns_search.clone(),
            dns_options: request.dns_options.clone(),
            extra_hosts,
        };
        let mut draft =
            SandboxDraft { created_netns: record.owns_netns(), record, published: false, resolver_listener: None };
        let wanted = WantedEndpoint { ipv4, ipv6, mac };
        let built = self.build_sandbox(&mut state, &mut draft, &request, network.as_ref(), wanted).await;
        if let Err(e) = built {
            self.undo_sandbox(&mut state, &draft).await;
            return Err(e);
        }
        tracing::info!(sandbox = %draft.record.name, mode = ?draft.record.mode, "sandbox created");
        self.events.sandbox(Action::Create, &draft.record);
        self.events.endpoints(Action::Connect, &state.networks, &draft.record);
        let view = state.sandbox_view(&draft.record);
        if let Some(listener) = draft.resolver_listener {
            state.resolver_listeners.insert(draft.record.id.clone(), listener);
        }
        state.sandboxes.insert(draft.record.id.clone(), draft.record);
        self.refresh_dns(&state);
        Ok(view)
    }

    fn netns_path_for(&self, id: &str) -> String {
        self.paths.netns_dir.join(id).display().to_string()
    }

    async fn build_sandbox(
        &self,
        state: &mut State,
        draft: &mut SandboxDraft,
        request: &SandboxCreate,
        network: Option<&NetworkRecord>,
        wanted: WantedEndpoint,
    ) -> Result<()> {
        if draft.created_netns {
            self.host.create_netns(Path::new(&draft.record.netns_path)).await?;
        }
        // A sandbox made on a network with names gets its resolver; the redirect's `nft` runs
        // while the endpoint is made.
        let resolver_setup = match network {
            Some(network) if draft.record.mode == SandboxMode::Networked && has_names(network) => {
                Some(self.start_resolver(&draft.record, None, false)?)
            }
            _ => None,
        };
        if let Some(network) = network {
            let mut endpoint = self.add_endpoint(state, &draft.record, network, wanted).await?;
            endpoint.aliases = request.aliases.clone();
            draft.record.endpoints.push(endpoint);
        }
        if let Some(setup) = resolver_setup {
            let (listener, ports) = self.finish_resolver(&draft.record, setup)?;
            draft.record.resolver = Some(ports);
            draft.resolver_listener = Some(listener);
        }
        let specs = port_specs(&request.ports, &request.expose, request.publish_all)?;
        let destination = Destination::of(&state.networks, &draft.record);
        let record = &draft.record;
        let reservations = state.ports.reserve(&record.id, &record.name, destination.as_ref(), specs)?;
        draft.record.ports = reservations.iter().map(|r| r.mapping.clone()).collect();
        state.ports.publish(&draft.record.id, &draft.record.name, destination.unwrap_or_default(), reservations)?;
        draft.published = true;
        self.write_files(state, &draft.record)?;
        self.store.commit(&[Change::PutSandbox(&draft.record)])?;
        Ok(())
    }

    /// Undoes whatever [`Self::build_sandbox`] did before it failed.
    async fn undo_sandbox(&self, state: &mut State, draft: &SandboxDraft) {
        if draft.published {
            self.withdraw_ports(state, &draft.record.id, None);
        }
        for endpoint in &draft.record.endpoints {
            self.remove_endpoint(state, endpoint).await;
        }
        if let Err(e) = remove_sandbox_files(&draft.record) {
            tracing::error!(sandbox = %draft.record.name, "cannot remove sandbox files: {e}");
        }
        if draft.created_netns {
            if let Err(e) = self.host.delete_netns(Path::new(&draft.record.netns_path)) {
                tracing::error!(sandbox = %draft.record.name, "cannot remove namespace: {e}");
            }
        }
    }

    /// Allocates addresses on `network` and joins `sandbox` to it; releases them if joining fails.
    async fn add_endpoint(
        &self,
        state: &mut State,
        sandbox: &SandboxRecord,
        network: &NetworkRecord,
        wanted: WantedEndpoint,
    ) -> Result<EndpointRecord> {
        let WantedEndpoint { ipv4, ipv6, mac } = wanted;
        let taken = mac.map(|m| m.to_string()).filter(|m| state.endpoints_on(&network.id).any(|(_, e)| &e.mac == m));
        if let Some(mac) = taken {
            return Err(Error::Conflict(format!("MAC address {mac} is already in use on network {}", network.name)));
        }
        if ipv4.is_some_and(|a| a.is_ipv6()) || ipv6.is_some_and(|a| a.is_ipv4()) {
            return Err(Error::BadRequest("--ip takes an IPv4 address and --ip6 an IPv6 address".into()));
        }
        if network.name == DEFAULT_NETWORK && (ipv4.is_some() || ipv6.is_some()) {
            return Err(Error::BadRequest(
                "user specified IP address is supported on user defined networks only".into(),
            ));
        }
        let id = ids::new_id();
        let netns = PathBuf::from(&sandbox.netns_path);
        let interface = if sandbox.endpoints.is_empty() && sandbox.owns_netns() {
            "eth0".to_owned()
        } else {
            self.host.free_interface_name(&netns).await?
        };
        let driver = self.drivers.select(&network.driver)?;
        let pools = state.pools.get_mut(&network.id).expect("every network has pools");
        let mut endpoint = EndpointRecord {
            driver_state: EndpointDriverState::default(),
            id,
            network_id: network.id.clone(),
            interface,
            mac: String::new(),
            ipv4: None,
            ipv6: None,
            gateway4: None,
            gateway6: None,
            aliases: Vec::new(),
            requested: RequestedAddresses {
                ipv4: match ipv4 {
                    Some(IpAddr::V4(a)) => Some(a),
                    _ => None,
                },
                ipv6: match ipv6 {
                    Some(IpAddr::V6(a)) => Some(a),
                    _ => None,
                },
            },
        };
        for (requested, v6) in [(ipv4, false), (ipv6, true)] {
            let Some(pool) = pools.for_family(v6) else {
                if let Some(addr) = requested {
                    release_all(pools, &endpoint);
                    return Err(Error::BadRequest(format!("network {} has no subnet for {addr}", network.name)));
                }
                continue;
            };
            let allocated = match pool.allocate(requested) {
                Ok(addr) => addr,
                Err(e) => {
                    release_all(pools, &endpoint);
                    return Err(e.into());
                }
            };
            let prefix = pool.subnet().prefix_len();
            match (allocated, pool.gateway()) {
                (IpAddr::V4(a), IpAddr::V4(g)) => {
                    endpoint.ipv4 = Some(Ipv4Net::new(a, prefix).expect("pool prefix is valid"));
                    endpoint.gateway4 = Some(g);
                }
                (IpAddr::V6(a), IpAddr::V6(g)) => {
                    endpoint.ipv6 = Some(Ipv6Net::new(a, prefix).expect("pool prefix is valid"));
                    endpoint.gateway6 = Some(g);
                }
                _ => unreachable!("a pool hands out addresses of its own family"),
            }
        }
        // The MAC asked for, else Docker's 02:42 + IPv4 address unless an endpoint has that one
        // (asked for); else, and without IPv4, the kernel picks one.
        endpoint.mac = match mac {
            Some(mac) => mac.to_string(),
            None => endpoint
                .ipv4
                .map(|a| MacAddress::from_ipv4(a.addr()).to_string())
                .filter(|derived| !state.endpoints_on(&network.id).any(|(_, e)| &e.mac == derived))
                .unwrap_or_default(),
        };
        driver.plan_endpoint(&mut endpoint);
        let default_route = sandbox.endpoints.is_empty();
        match driver.join(network, &endpoint, &netns, default_route).await {
            Ok(mac) => endpoint.mac = mac,
            Err(e) => {
                release_all(state.pools.get_mut(&network.id).expect("pools exist"), &endpoint);
                return Err(e.into());
            }
        }
        Ok(endpoint)
    }

    /// Removes an endpoint's veth pair and frees its addresses; failures are logged, since what
    /// is left carries berth's mark and the next reconcile removes it.
    async fn remove_endpoint(&self, state: &mut State, endpoint: &EndpointRecord) {
        let left = match state.networks.get(&endpoint.network_id) {
            Some(network) => match self.drivers.select(&network.driver) {
                Ok(driver) => driver.leave(endpoint).await,
                Err(e) => Err(e),
            },
            // Cannot happen (a network with endpoints is not removed); reconcile would clean up.
            None => Ok(()),
        };
        if let Err(e) = left {
            tracing::error!(endpoint = %endpoint.id, "cannot remove endpoint: {e}");
        }
        if let Some(pools) = state.pools.get_mut(&endpoint.network_id) {
            release_all(pools, endpoint);
        }
    }

    pub async fn connect(&self, network_key: &str, request: NetworkConnect) -> Result<Sandbox> {
        let mut state = self.state.lock().await;
        let network = state.network(network_key)?.clone();
        let mut sandbox = state.sandbox(&request.container)?.clone();
        if !matches!(sandbox.mode, SandboxMode::Networked | SandboxMode::Attached) {
            return Err(Error::BadRequest(format!(
                "sandbox {} uses network mode {}: it cannot be connected to networks",
                sandbox.name,
                state.mode_text(&sandbox)
            )));
        }
        if sandbox.endpoints.iter().any(|e| e.network_id == network.id) {
            return Err(Error::Conflict(format!(
                "sandbox {} is already connected to network {}",
                sandbox.name, network.name
            )));
        }
        let wanted =
            WantedEndpoint { ipv4: request.ipv4_address, ipv6: request.ipv6_address, mac: request.mac_address };
        if !request.aliases.is_empty() {
            check_aliases(Some(&network), &request.aliases)?;
        }
        let mut endpoint = self.add_endpoint(&mut state, &sandbox, &network, wanted).await?;
        endpoint.aliases = request.aliases;
        sandbox.endpoints.push(endpoint.clone());
        // The listener (if this is the sandbox's first network with names) is dropped, closing
        // its sockets, when a later step fails.
        let committed = match self.ensure_resolver(&state, &mut sandbox).await {
            Ok(listener) => self
                .write_files(&state, &sandbox)
                .map_err(Error::from)
                .and_then(|()| Ok(self.store.commit(&[Change::PutSandbox(&sandbox)])?))
                .map(|()| listener),
            Err(e) => Err(e),
        };
        let listener = match committed {
            Ok(listener) => listener,
            Err(e) => {
                self.remove_endpoint(&mut state, &endpoint).await;
                return Err(e);
            }
        };
        if let Some(listener) = listener {
            state.resolver_listeners.insert(sandbox.id.clone(), listener);
        }
        tracing::info!(sandbox = %sandbox.name, network = %network.name, "connected");
        self.events.endpoint(Action::Connect, &network, &sandbox);
        let view = state.sandbox_view(&sandbox);
        state.sandboxes.insert(sandbox.id.clone(), sandbox.clone());
        self.redirect_ports(&mut state, &sandbox.id);
        self.refresh_dns(&state);
        Ok(view)
    }

    pub async fn disconnect(&self, network_key: &str, request: NetworkDisconnect) -> Result<Sandbox> {
        let mut state = self.state.lock().await;
        let network = state.network(network_key)?.clone();
        let mut sandbox = state.sandbox(&request.container)?.clone();
        let Some(position) = sandbox.endpoints.iter().position(|e| e.network_id == network.id) else {
            return Err(Error::NotFound(format!(
                "sandbox {} is not connected to network {}",
                sandbox.name, network.name
            )));
        };
        let endpoint = sandbox.endpoints.remove(position);
        // Store first: if the kernel step then fails, the veth left behind carries berth's mark
        // and no record, so reconcile removes it.
        self.store.commit(&[Change::PutSandbox(&sandbox)])?;
        self.events.endpoint(Action::Disconnect, &network, &sandbox);
        // Published ports follow the sandbox to its next network, or stop with this one.
        state.sandboxes.insert(sandbox.id.clone(), sandbox.clone());
        self.redirect_ports(&mut state, &sandbox.id);
        // Its names go before its veth: nothing resolves to an address that is going away.
        self.refresh_dns(&state);
        self.remove_endpoint(&mut state, &endpoint).await;
        if let Err(e) = self.write_files(&state, &sandbox) {
            tracing::error!(sandbox = %sandbox.name, "cannot rewrite sandbox files: {e}");
        }
        tracing::info!(sandbox = %sandbox.name, network = %network.name, "disconnected");
        Ok(state.sandbox_view(&sandbox))
    }

    /// Adds a process to the sandbox for `caller`, the API client's pid (see [`identify_process`]).
    pub async fn register_process(&self, key: &str, request: ProcessRegister, caller: Option<u32>) -> Result<()> {
        let mut state = self.state.lock().await;
        let mut sandbox = state.sandbox(key)?.clone();
        let process = identify_process(&sandbox, request.pid, caller)?;
        let alive = live_pids(&sandbox);
        sandbox.processes.retain(|p| alive.contains(&p.pid) && p.pid != process.pid);
        sandbox.processes.push(process);
        if request.main {
            sandbox.main_pid = Some(request.pid);
        }
        self.store.commit(&[Change::PutSandbox(&sandbox)])?;
        if request.main {
            self.events.sandbox(Action::Start, &sandbox);
        }
        state.sandboxes.insert(sandbox.id.clone(), sandbox);
        Ok(())
    }

    /// Sends SIGTERM to the sandbox's processes, then SIGKILL to those left after the grace time.
    pub async fn stop_sandbox(&self, key: &str) -> Result<Sandbox> {
        let sandbox = self.state.lock().await.sandbox(key)?.clone();
        if !live_pids(&sandbox).is_empty() {
            signal_and_wait(&sandbox).await;
            self.events.sandbox(Action::Die, &sandbox);
            self.events.sandbox(Action::Stop, &sandbox);
        }
        self.inspect_sandbox(&sandbox.id).await
    }

    pub async fn remove_sandbox(&self, key: &str, force: bool) -> Result<()> {
        let (sandbox, running) = {
            let state = self.state.lock().await;
            let sandbox = state.sandbox(key)?.clone();
            if let Some(user) = state.sandboxes.values().find(|s| s.mode == SandboxMode::Container(sandbox.id.clone()))
            {
                return Err(Error::Conflict(format!(
                    "sandbox {} shares its namespace with sandbox {}: remove that one first",
                    sandbox.name, user.name
                )));
            }
            let running = !live_pids(&sandbox).is_empty();
            if running && !force {
                return Err(Error::Conflict(format!(
                    "sandbox {} is running: stop it first or remove it with --force",
                    sandbox.name
                )));
            }
            (sandbox, running)
        };
        if running {
            signal_and_wait(&sandbox).await;
            self.events.sandbox(Action::Die, &sandbox);
        }
        let mut state = self.state.lock().await;
        // Someone may have removed it while processes were being stopped.
        if !state.sandboxes.contains_key(&sandbox.id) {
            return Ok(());
        }
        // Store first; what the kernel step leaves behind is marked and reconciled away.
        self.store.commit(&[Change::DeleteSandbox(&sandbox.id)])?;
        self.events.endpoints(Action::Disconnect, &state.networks, &sandbox);
        self.events.sandbox(Action::Destroy, &sandbox);
        state.sandboxes.remove(&sandbox.id);
        state.resolver_listeners.remove(&sandbox.id);
        self.refresh_dns(&state);
        self.withdraw_ports(&mut state, &sandbox.id, None);
        for endpoint in &sandbox.endpoints {
            self.remove_endpoint(&mut state, endpoint).await;
        }
        if let Err(e) = remove_sandbox_files(&sandbox) {
            tracing::error!(sandbox = %sandbox.name, "cannot remove sandbox files: {e}");
        }
        if sandbox.owns_netns() {
            if let Err(e) = self.host.delete_netns(Path::new(&sandbox.netns_path)) {
                tracing::error!(sandbox = %sandbox.name, "cannot remove namespace: {e}");
            }
        }
        tracing::info!(sandbox = %sandbox.name, "sandbox removed");
        Ok(())
    }

    /// Removes `--rm` sandboxes whose main process has ended, or never registered within
    /// [`MAIN_PROCESS_GRACE`] of the sandbox's creation (the client died, or berthd died
    /// before the client could register it); run periodically, and so also after a restart.
    pub async fn remove_finished_sandboxes(&self) {
        let now = ids::unix_nanos_now();
        let overdue = |s: &SandboxRecord| {
            ids::parse_datetime(&s.created)
                .is_none_or(|created| now.saturating_sub(created) > MAIN_PROCESS_GRACE.as_nanos() as i64)
        };
        let finished: Vec<String> = {
            let state = self.state.lock().await;
            state
                .sandboxes
                .values()
                .filter(|s| {
                    s.auto_remove
                        && match s.main_pid {
                            Some(pid) => !live_pids(s).contains(&pid),
                            None => overdue(s),
                        }
                })
                .map(|s| s.id.clone())
                .collect()
        };
        for id in finished {
            if let Err(e) = self.remove_sandbox(&id, true).await {
                tracing::warn!(sandbox = %id, "cannot auto-remove: {e}");
            }
        }
    }
}

/// A namespace another runtime made may be attached; the daemon's own (what `--network host`
/// shares), the machine's (pid 1's) and one a sandbox already has may not: berth would
/// renumber and reroute them.
fn check_attachable(state: &State, host_netns: &str, path: &str) -> Result<()> {
    let id_of = |path: &str| berth_sys::netns::netns_id(Path::new(path)).ok();
    if !berth_sys::netns::is_netns(Path::new(path)) {
        return Err(Error::BadRequest(format!("{path} is not a network namespace")));
    }
    let wanted = id_of(path).ok_or_else(|| Error::BadRequest(format!("cannot read network namespace {path}")))?;
    if id_of(host_netns) == Some(wanted) || id_of("/proc/1/ns/net") == Some(wanted) {
        return Err(Error::Forbidden(format!(
            "{path} is the host's network namespace: only a sandbox's own namespace can be attached"
        )));
    }
    if let Some(owner) = state.sandboxes.values().find(|s| id_of(&s.netns_path) == Some(wanted)) {
        return Err(Error::Conflict(format!("{path} is the network namespace of sandbox {}", owner.name)));
    }
    Ok(())
}

/// Network-scoped aliases need a network with names (Docker refuses them on the default one).
fn check_aliases(network: Option<&NetworkRecord>, aliases: &[String]) -> Result<()> {
    match network {
        Some(n) if n.name != DEFAULT_NETWORK => {}
        Some(n) => {
            return Err(Error::BadRequest(format!(
                "network-scoped aliases are supported only on user-defined networks, not on {}",
                n.name
            )))
        }
        None => return Err(Error::BadRequest("--network-alias needs a network".into())),
    }
    for alias in aliases {
        validate_name("alias", alias).map_err(Error::BadRequest)?;
    }
    Ok(())
}

pub(super) fn release_all(pools: &mut super::NetworkPools, endpoint: &EndpointRecord) {
    for addr in endpoint.addresses() {
        pools.release(addr);
    }
}

fn unused_name(state: &State) -> String {
    loop {
        let name = ids::random_name();
        if !state.sandboxes.values().any(|s| s.name == name) {
            return name;
        }
    }
}

async fn signal_and_wait(sandbox: &SandboxRecord) {
    let send = |signal| {
        for (_, process) in running_processes(sandbox) {
            // It may have ended since it was pinned; the signal then reaches nobody.
            let _ = process.signal(signal);
        }
    };
    send(Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while !live_pids(sandbox).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(Signal::SIGKILL);
    while !live_pids(sandbox).is_empty() && Instant::now() < deadline + Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

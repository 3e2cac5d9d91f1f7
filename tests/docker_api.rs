//! berthd's Docker Engine API subset, driven by real Docker clients: the docker CLI with
//! `DOCKER_HOST=unix://<berthd's socket>` and the Python docker SDK (PyPI `docker`), both run
//! inside the throwaway host. Every field a client shows is compared with berth's own view
//! (`berth --format json network inspect` / `inspect`), reachability is proven with real
//! traffic, and errors must carry berth's own message after Docker's `Error response from
//! daemon:`.
//!
//! The docker CLI is `$BERTH_TEST_DOCKER`, else `docker` on PATH, else `target/test-tools/docker`
//! (scripts/setup.sh extracts it there from Debian's docker.io without installing the package);
//! without one the CLI tests skip with a message. The SDK test makes a virtualenv in its
//! temporary directory and installs `docker` there offline, from the wheels scripts/setup.sh
//! downloaded into target/test-tools/wheels; when that fails it skips with a message.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use berth_integration::{binary_path, privileged, py, wait_for, Background, TestHost};
use berth_testns::can_run;
use serde_json::Value;

/// The docker CLI to test with, or None when the test skips ([`can_run`]: a failure under CI).
fn docker_cli() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BERTH_TEST_DOCKER").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join("docker")).find(|p| p.is_file()))
        .unwrap_or_default();
    let tools = test_tools().map(|dir| dir.join("docker"));
    let found = on_path.or_else(|| tools.filter(|p| p.is_file()));
    let what = "a docker CLI (none on PATH or in target/test-tools/: run scripts/setup.sh, which extracts it from \
                Debian's docker.io, or set BERTH_TEST_DOCKER)";
    if can_run(found.is_some(), what) {
        found
    } else {
        None
    }
}

/// The docker CLI pointed at one test host's berthd, with its own empty config directory.
struct Docker<'a> {
    host: &'a TestHost,
    cli: PathBuf,
    config: PathBuf,
    /// The CLI's major version (20 for Debian 12's docker.io, 28 for a current one).
    major: u32,
}

impl<'a> Docker<'a> {
    fn new(host: &'a TestHost, cli: PathBuf) -> Self {
        let config = host.dir().join("docker-config");
        std::fs::create_dir_all(&config).expect("docker config dir");
        let version = Command::new(&cli).arg("--version").output().expect("docker --version");
        let text = String::from_utf8_lossy(&version.stdout).into_owned();
        // "Docker version 28.2.2, build e6534b4"
        let major = text
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.split('.').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{} --version printed {text:?}", cli.display()));
        Self { host, cli, config, major }
    }

    /// `docker ARGS` inside the host, against its berthd.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.host.command(&self.cli);
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.host.socket().display()))
            .env("DOCKER_CONFIG", &self.config)
            .env("DOCKER_CLI_HINTS", "false")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("DOCKER_CONTENT_TRUST");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().expect("run docker")
    }

    /// stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// stderr of a command that must fail.
    fn err(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "docker {args:?} should have failed but printed {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("docker {args:?} printed no JSON ({e}): {text}"))
    }

    /// The names `docker network ls --format {{.Name}} ARGS` prints, sorted.
    fn network_names(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["network", "ls", "--format", "{{.Name}}"];
        args.extend_from_slice(extra);
        let mut names: Vec<String> = self.ok(&args).lines().map(str::to_owned).collect();
        names.sort();
        names
    }

    /// How this CLI writes the IPv6 wildcard with a port: `[::]:8080` since Docker 23,
    /// `:::8080` before.
    fn v6_any(&self, port: u16) -> String {
        if self.major >= 23 {
            format!("[::]:{port}")
        } else {
            format!(":::{port}")
        }
    }
}

/// berth's own message for a command that fails: its stderr without `Error: `.
fn berth_message(host: &TestHost, args: &[&str]) -> String {
    let err = host.berth_err(args);
    let line = err.trim();
    line.strip_prefix("Error: ").unwrap_or_else(|| panic!("berth {args:?} printed {line:?}")).to_owned()
}

/// Docker's form of a daemon error, carrying berth's message.
fn assert_daemon_error(what: &str, stderr: &str, message: &str) {
    let expected = format!("Error response from daemon: {message}");
    assert!(stderr.contains(&expected), "{what}: expected {expected:?} in the CLI's stderr, got {stderr:?}");
}

/// Field by field, `docker` against `berth`, naming the field that differs.
fn assert_fields(what: &str, docker: &Value, berth: &Value, fields: &[&str]) {
    for field in fields {
        assert_eq!(docker[field], berth[field], "{what}: {field} differs (docker: {docker}, berth: {berth})");
    }
}

const ENDPOINT_FIELDS: &[&str] = &[
    "NetworkID",
    "EndpointID",
    "Gateway",
    "IPAddress",
    "IPPrefixLen",
    "IPv6Gateway",
    "GlobalIPv6Address",
    "GlobalIPv6PrefixLen",
    "MacAddress",
];

const NETWORK_CONTAINER_FIELDS: &[&str] = &["Name", "EndpointID", "MacAddress", "IPv4Address", "IPv6Address"];

/// A network as `docker network inspect` shows it against berth's view of it: identity, IPAM
/// and each connected sandbox.
fn assert_network_matches(docker: &Value, berth: &Value) {
    let name = berth["Name"].as_str().unwrap_or("?");
    assert_fields(
        &format!("network {name}"),
        docker,
        berth,
        &["Id", "Name", "Driver", "Scope", "EnableIPv6", "Internal"],
    );
    let docker_ipam = docker["IPAM"]["Config"].as_array().cloned().unwrap_or_default();
    let berth_ipam = berth["IPAM"]["Config"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        docker_ipam.len(),
        berth_ipam.len(),
        "network {name}: IPAM.Config {docker_ipam:?} vs berth's {berth_ipam:?}"
    );
    for (d, b) in docker_ipam.iter().zip(&berth_ipam) {
        assert_fields(&format!("network {name} IPAM"), d, b, &["Subnet", "Gateway"]);
    }
    let docker_containers = docker["Containers"].as_object().cloned().unwrap_or_default();
    let berth_containers = berth["Containers"].as_object().cloned().unwrap_or_default();
    assert_eq!(
        docker_containers.keys().collect::<Vec<_>>(),
        berth_containers.keys().collect::<Vec<_>>(),
        "network {name}: Containers differ"
    );
    for (id, b) in &berth_containers {
        assert_fields(&format!("network {name} container {id}"), &docker_containers[id], b, NETWORK_CONTAINER_FIELDS);
    }
}

/// A sandbox as `docker inspect` shows it against `berth inspect`: id, name, each network's
/// endpoint and the published ports.
fn assert_container_matches(docker: &Value, berth: &Value) {
    let name = berth["Name"].as_str().unwrap_or("?");
    assert_eq!(docker["Id"], berth["Id"], "container {name}: Id");
    assert_eq!(docker["Name"], format!("/{name}"), "container {name}: Name");
    let docker_networks = docker["NetworkSettings"]["Networks"].as_object().cloned().unwrap_or_default();
    let berth_networks = berth["NetworkSettings"]["Networks"].as_object().cloned().unwrap_or_default();
    assert_eq!(
        docker_networks.keys().collect::<Vec<_>>(),
        berth_networks.keys().collect::<Vec<_>>(),
        "container {name}: NetworkSettings.Networks differ"
    );
    for (network, b) in &berth_networks {
        assert_fields(&format!("container {name} on {network}"), &docker_networks[network], b, ENDPOINT_FIELDS);
    }
    assert_eq!(
        docker["NetworkSettings"]["Ports"], berth["NetworkSettings"]["Ports"],
        "container {name}: NetworkSettings.Ports"
    );
}

fn s(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}"))
}

#[test]
fn docker_version_shows_berths_version_and_api_version() {
    if !privileged() {
        return;
    }
    let Some(cli) = docker_cli() else { return };
    let host = TestHost::new(&[]);
    let docker = Docker::new(&host, cli);
    let berth_version = host.berth_json(&["version"]);

    // The API version berthd offers Docker clients, as its /_ping says.
    let ping = host
        .sh_ok(&format!("curl -sS -D - -o /dev/null --unix-socket {} http://berthd/_ping", host.socket().display()));
    let api_version = ping
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case("api-version").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("GET /_ping has no API-Version header: {ping:?}"));

    let version = docker.json(&["version", "--format", "{{json .}}"]);
    let server = &version["Server"];
    assert_eq!(server["Version"], berth_version["Version"], "docker version: Server.Version: {server}");
    assert_eq!(s(&server["ApiVersion"]), api_version, "docker version: Server.ApiVersion vs /_ping's API-Version");

    // What a user reads: the server section names berth's version and the API version.
    let text = docker.ok(&["version"]);
    let server_section =
        text.split_once("\nServer:").map(|(_, rest)| rest).unwrap_or_else(|| panic!("no Server section: {text}"));
    let field = |label: &str| {
        server_section
            .lines()
            .find_map(|line| line.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {label:?} in the Server section of docker version: {text}"))
    };
    assert_eq!(field("Version:"), s(&berth_version["Version"]), "docker version:\n{text}");
    assert!(field("API version:").starts_with(&api_version), "docker version:\n{text}");
}

#[test]
fn docker_network_create_ls_and_inspect_show_what_berth_shows() {
    if !privileged() {
        return;
    }
    let Some(cli) = docker_cli() else { return };
    let host = TestHost::new(&[]);
    let docker = Docker::new(&host, cli);

    let id1 = docker
        .ok(&["network", "create", "--subnet", "10.123.0.0/24", "--gateway", "10.123.0.1", "n1"])
        .trim()
        .to_owned();
    let id2 = docker.ok(&["network", "create", "--subnet", "10.124.0.0/24", "n2"]).trim().to_owned();
    let n1 = host.berth_json(&["network", "inspect", "n1"])[0].clone();
    assert_eq!(id1, s(&n1["Id"]), "docker network create prints the new network's id");
    assert_eq!(id2, s(&host.berth_json(&["network", "inspect", "n2"])[0]["Id"]));
    assert_eq!(n1["IPAM"]["Config"][0]["Subnet"], "10.123.0.0/24", "{n1}");
    assert_eq!(n1["IPAM"]["Config"][0]["Gateway"], "10.123.0.1", "{n1}");
    assert_eq!(n1["Driver"], "bridge");

    // docker network ls: the same networks as berth's, one row each.
    let berth_networks = host.berth_json(&["network", "ls"]);
    let berth_networks = berth_networks.as_array().expect("berth network ls is a list");
    let expected: BTreeSet<String> = berth_networks
        .iter()
        .map(|n| format!("{} {} {} {}", s(&n["Id"]), s(&n["Name"]), s(&n["Driver"]), s(&n["Scope"])))
        .collect();
    let listed: BTreeSet<String> = docker
        .ok(&["network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}} {{.Driver}} {{.Scope}}"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, expected, "docker network ls vs berth network ls");
    let table = docker.ok(&["network", "ls"]);
    let mut rows = table.lines();
    let header: Vec<&str> = rows.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"], "{table}");
    let n1_row: Vec<&str> =
        rows.map(|r| r.split_whitespace().collect::<Vec<_>>()).find(|r| r.get(1) == Some(&"n1")).expect(&table);
    assert_eq!(n1_row, [&id1[..12], "n1", "bridge", "local"], "{table}");

    // Filters, with Docker's meanings: name matches part of a name, driver and id whole ones.
    assert_eq!(docker.network_names(&["--filter", "name=n1"]), ["n1"]);
    assert_eq!(
        docker.network_names(&["--filter", "name=n"]),
        ["n1", "n2"],
        "the name filter matches part of a name, as in Docker"
    );
    assert_eq!(docker.network_names(&["--filter", &format!("id={id1}")]), ["n1"]);
    let mut bridges: Vec<String> =
        berth_networks.iter().filter(|n| n["Driver"] == "bridge").map(|n| s(&n["Name"]).to_owned()).collect();
    bridges.sort();
    assert_eq!(docker.network_names(&["--filter", "driver=bridge"]), bridges);
    assert_eq!(docker.network_names(&["--filter", "driver=macvlan"]), Vec::<String>::new());

    // docker network inspect with a sandbox on the network: subnet, gateway, the sandbox's
    // address and MAC, all as berth has them.
    host.berth_ok(&["run", "-d", "--name", "web", "--network", "n1", "--", "sleep", "600"]);
    let web = host.inspect("web");
    let web_id = s(&web["Id"]).to_owned();
    let endpoint = &web["NetworkSettings"]["Networks"]["n1"];
    let n1 = host.berth_json(&["network", "inspect", "n1"])[0].clone();
    let shown = docker.json(&["network", "inspect", "n1"]);
    assert_eq!(shown.as_array().map(Vec::len), Some(1), "{shown}");
    assert_network_matches(&shown[0], &n1);
    let web_on_n1 = &shown[0]["Containers"][&web_id];
    assert_eq!(web_on_n1["IPv4Address"], format!("{}/24", s(&endpoint["IPAddress"])), "{shown}");
    assert_eq!(web_on_n1["MacAddress"], endpoint["MacAddress"], "{shown}");
    assert_eq!(web_on_n1["Name"], "web", "{shown}");
    // The same through the CLI's Go types (a template), as a user's --format sees it.
    let template = "{{.Id}}|{{range .IPAM.Config}}{{.Subnet}}|{{.Gateway}}{{end}}|\
                    {{range $id, $c := .Containers}}{{$id}}|{{$c.Name}}|{{$c.IPv4Address}}|{{$c.MacAddress}}{{end}}";
    assert_eq!(
        docker.ok(&["network", "inspect", "--format", template, "n1"]).trim(),
        format!(
            "{id1}|10.123.0.0/24|10.123.0.1|{web_id}|web|{}/24|{}",
            s(&endpoint["IPAddress"]),
            s(&endpoint["MacAddress"])
        )
    );
    // By id and by id prefix too.
    assert_eq!(docker.json(&["network", "inspect", &id1])[0]["Name"], "n1");
    assert_eq!(docker.json(&["network", "inspect", &id1[..12]])[0]["Name"], "n1");
}

#[test]
fn docker_network_connect_with_ip_is_reachable_and_disconnect_rm_prune_work() {
    if !privileged() {
        return;
    }
    let Some(cli) = docker_cli() else { return };
    let host = TestHost::new(&[]);
    let docker = Docker::new(&host, cli);
    docker.ok(&["network", "create", "--subnet", "10.123.0.0/24", "--gateway", "10.123.0.1", "n1"]);
    docker.ok(&["network", "create", "--subnet", "10.124.0.0/24", "n2"]);
    // web starts on n2 (publishing 8080 → 80), so docker can connect it to n1 with --ip.
    host.serve("web", "n2", &["8080:80"], &py::tcp_echo_server("0.0.0.0", 80));
    host.berth_ok(&["run", "-d", "--name", "client", "--network", "n1", "--", "sleep", "600"]);

    docker.ok(&["network", "connect", "--ip", "10.123.0.50", "--alias", "frontend", "n1", "web"]);
    let web = host.inspect("web");
    let web_id = s(&web["Id"]).to_owned();
    assert_eq!(web["NetworkSettings"]["Networks"]["n1"]["IPAddress"], "10.123.0.50", "{web}");
    assert_eq!(web["NetworkSettings"]["Networks"]["n1"]["Aliases"], serde_json::json!(["frontend"]), "{web}");
    // Real traffic from another sandbox on n1 to the address docker asked for.
    assert_eq!(host.python_in("client", &py::tcp_client("10.123.0.50", 80, "hello")), "echo:hello");

    // docker inspect / docker container inspect: what berth inspect says.
    let shown = docker.json(&["inspect", "web"]);
    assert_eq!(shown.as_array().map(Vec::len), Some(1), "{shown}");
    assert_container_matches(&shown[0], &web);
    assert_container_matches(&docker.json(&["container", "inspect", "web"])[0], &web);
    let endpoint = &web["NetworkSettings"]["Networks"]["n1"];
    assert_eq!(
        docker
            .ok(&[
                "inspect",
                "--format",
                "{{.NetworkSettings.Networks.n1.IPAddress}} {{.NetworkSettings.Networks.n1.MacAddress}} \
                 {{.NetworkSettings.Networks.n1.NetworkID}} {{.State.Running}}",
                "web"
            ])
            .trim(),
        format!("10.123.0.50 {} {} true", s(&endpoint["MacAddress"]), s(&endpoint["NetworkID"]))
    );
    assert_eq!(
        shown[0]["NetworkSettings"]["Ports"]["80/tcp"],
        serde_json::json!([{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}]),
        "{shown}"
    );
    // docker network inspect n1 now lists web with the address and its MAC.
    let n1 = host.berth_json(&["network", "inspect", "n1"])[0].clone();
    let n1_shown = docker.json(&["network", "inspect", "n1"])[0].clone();
    assert_network_matches(&n1_shown, &n1);
    assert_eq!(n1_shown["Containers"][&web_id]["IPv4Address"], "10.123.0.50/24", "{n1_shown}");
    assert_eq!(n1_shown["Containers"][&web_id]["MacAddress"], endpoint["MacAddress"], "{n1_shown}");

    // docker ps: the running sandboxes, with web's ports.
    let sandboxes = host.berth_json(&["ps"]);
    let expected: BTreeSet<(String, String)> = sandboxes
        .as_array()
        .expect("berth ps is a list")
        .iter()
        .map(|sb| (s(&sb["Id"]).to_owned(), s(&sb["Name"]).to_owned()))
        .collect();
    let ps = docker.ok(&["ps", "--no-trunc", "--format", "{{.ID}}|{{.Names}}|{{.Ports}}"]);
    let rows: BTreeMap<(String, String), String> = ps
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, '|');
            let (id, name, ports) =
                (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            ((id.to_owned(), name.to_owned()), ports.to_owned())
        })
        .collect();
    assert_eq!(rows.keys().cloned().collect::<BTreeSet<_>>(), expected, "docker ps:\n{ps}");
    let web_ports = &rows[&(web_id.clone(), "web".to_owned())];
    assert!(web_ports.contains("0.0.0.0:8080->80/tcp"), "docker ps PORTS of web: {web_ports:?}");
    assert!(web_ports.contains(&format!("{}->80/tcp", docker.v6_any(8080))), "docker ps PORTS of web: {web_ports:?}");
    let table = docker.ok(&["ps"]);
    assert!(table.starts_with("CONTAINER ID"), "{table}");
    assert!(table.lines().any(|l| l.starts_with(&web_id[..12]) && l.trim_end().ends_with("web")), "{table}");

    // docker port: Docker's lines, the same as berth port's (from Docker 23 on, which writes
    // IPv6 addresses in brackets as berth does).
    let port = docker.ok(&["port", "web"]);
    assert_eq!(port, format!("80/tcp -> 0.0.0.0:8080\n80/tcp -> {}\n", docker.v6_any(8080)));
    assert_eq!(docker.ok(&["port", "web", "80"]), format!("0.0.0.0:8080\n{}\n", docker.v6_any(8080)));
    if docker.major >= 23 {
        assert_eq!(port, host.berth_ok(&["port", "web"]));
    }

    // disconnect: berth no longer has web on n1, docker no longer shows it, and the address
    // no longer answers.
    docker.ok(&["network", "disconnect", "n1", "web"]);
    let web = host.inspect("web");
    assert!(web["NetworkSettings"]["Networks"].get("n1").is_none(), "{web}");
    let n1_shown = docker.json(&["network", "inspect", "n1"])[0].clone();
    assert!(n1_shown["Containers"].get(&web_id).is_none(), "{n1_shown}");
    assert_network_matches(&n1_shown, &host.berth_json(&["network", "inspect", "n1"])[0]);
    assert_container_matches(&docker.json(&["inspect", "web"])[0], &web);
    let probe = host.python_in("client", &py::tcp_probe("10.123.0.50", 80, "gone", 1.0));
    assert!(probe.starts_with("FAILED"), "10.123.0.50 still answers after disconnect: {probe:?}");

    // rm: refused while web is on n2, with berth's message; done once web is gone.
    let message = berth_message(&host, &["network", "rm", "n2"]);
    assert_daemon_error("docker network rm n2", &docker.err(&["network", "rm", "n2"]), &message);
    host.berth_ok(&["rm", "--force", "web"]);
    assert_eq!(docker.ok(&["network", "rm", "n2"]).trim(), "n2");
    assert!(host.berth(&["network", "inspect", "n2"]).status.code() != Some(0));

    // A stopped sandbox: gone from docker ps, in docker ps -a as exited.
    host.berth_ok(&["stop", "client"]);
    assert!(!docker.ok(&["ps", "--format", "{{.Names}}"]).lines().any(|l| l == "client"));
    let all = docker.ok(&["ps", "-a", "--format", "{{.Names}}|{{.Status}}"]);
    assert!(all.lines().any(|l| l.starts_with("client|Exited")), "docker ps -a:\n{all}");

    // prune removes the networks without endpoints (n3, n4), keeps n1 (client, stopped but
    // still connected) and bridge.
    docker.ok(&["network", "create", "n3"]);
    docker.ok(&["network", "create", "--subnet", "10.125.0.0/24", "n4"]);
    let pruned = docker.ok(&["network", "prune", "-f"]);
    let mut lines: Vec<&str> = pruned.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.first(), Some(&"Deleted Networks:"), "{pruned}");
    lines.remove(0);
    lines.sort_unstable();
    assert_eq!(lines, ["n3", "n4"], "docker network prune -f:\n{pruned}");
    let mut left: Vec<String> =
        host.berth_json(&["network", "ls"]).as_array().unwrap().iter().map(|n| s(&n["Name"]).to_owned()).collect();
    left.sort();
    assert_eq!(left, ["bridge", "n1"]);
    assert_eq!(docker.network_names(&[]), ["bridge", "n1"]);
}

#[test]
fn docker_errors_carry_berths_message_and_change_nothing() {
    if !privileged() {
        return;
    }
    let Some(cli) = docker_cli() else { return };
    let host = TestHost::new(&[]);
    let docker = Docker::new(&host, cli);
    docker.ok(&["network", "create", "--subnet", "10.123.0.0/24", "n1"]);
    docker.ok(&["network", "create", "--subnet", "10.126.0.0/24", "n2"]);
    host.berth_ok(&["run", "-d", "--name", "web", "--network", "n1", "--", "sleep", "600"]);
    host.berth_ok(&["run", "-d", "--name", "other", "--network", "n2", "--ip", "10.126.0.5", "--", "sleep", "600"]);
    let snapshot = || (host.berth_json(&["network", "ls"]), host.berth_json(&["ps"]), host.links());
    let before = snapshot();

    // (docker's command, berth's command for the same request)
    let cases: &[(&[&str], &[&str])] = &[
        // duplicate name
        (
            &["network", "create", "--subnet", "10.127.0.0/24", "n1"],
            &["network", "create", "--subnet", "10.127.0.0/24", "n1"],
        ),
        // overlapping subnet
        (
            &["network", "create", "--subnet", "10.123.0.0/16", "n9"],
            &["network", "create", "--subnet", "10.123.0.0/16", "n9"],
        ),
        // checks only the daemon makes (both CLIs check that a gateway is inside the subnet
        // themselves, so that case never reaches berthd)
        (
            &["network", "create", "--subnet", "10.128.0.0/24", "--gateway", "10.128.0.255", "n9"],
            &["network", "create", "--subnet", "10.128.0.0/24", "--gateway", "10.128.0.255", "n9"],
        ),
        (
            &["network", "create", "--subnet", "10.128.0.5/24", "n9"],
            &["network", "create", "--subnet", "10.128.0.5/24", "n9"],
        ),
        (&["network", "create", "host"], &["network", "create", "host"]),
        (&["network", "create", "bridge"], &["network", "create", "bridge"]),
        (&["network", "rm", "bridge"], &["network", "rm", "bridge"]),
        (
            &["network", "connect", "--ip", "172.17.0.50", "bridge", "other"],
            &["network", "connect", "--ip", "172.17.0.50", "bridge", "other"],
        ),
        (&["network", "create", "--driver", "macvlan", "n9"], &["network", "create", "--driver", "macvlan", "n9"]),
        // unknown network
        (&["network", "rm", "nope"], &["network", "rm", "nope"]),
        (&["network", "connect", "nope", "web"], &["network", "connect", "nope", "web"]),
        (&["network", "disconnect", "nope", "web"], &["network", "disconnect", "nope", "web"]),
        // unknown sandbox
        (&["network", "connect", "n2", "nope"], &["network", "connect", "n2", "nope"]),
        // the network has endpoints
        (&["network", "rm", "n1"], &["network", "rm", "n1"]),
        // already connected / not connected
        (&["network", "connect", "n1", "web"], &["network", "connect", "n1", "web"]),
        (&["network", "disconnect", "n2", "web"], &["network", "disconnect", "n2", "web"]),
        // the address is taken / outside the subnet
        (
            &["network", "connect", "--ip", "10.126.0.5", "n2", "web"],
            &["network", "connect", "--ip", "10.126.0.5", "n2", "web"],
        ),
        (
            &["network", "connect", "--ip", "10.99.0.5", "n2", "web"],
            &["network", "connect", "--ip", "10.99.0.5", "n2", "web"],
        ),
        // inspect of what does not exist
        (&["network", "inspect", "nope"], &["network", "inspect", "nope"]),
        (&["container", "inspect", "nope"], &["inspect", "nope"]),
    ];
    let mut failures = Vec::new();
    for (docker_args, berth_args) in cases {
        let message = berth_message(&host, berth_args);
        let out = docker.run(docker_args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let expected = format!("Error response from daemon: {message}");
        // Before Docker 23 the CLI words a 404 of these routes itself ("No such network: nope").
        let old_wording = docker.major < 23
            && ["No such network: nope", "No such container: nope"].iter().any(|w| stderr.contains(w));
        if out.status.success() || !(stderr.contains(&expected) || old_wording) {
            failures.push(format!(
                "docker {docker_args:?}: {}, expected {expected:?} in stderr {stderr:?}",
                if out.status.success() { "succeeded" } else { "failed" }
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} error cases wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert!(before == snapshot(), "a refused docker command changed berth's state");

    // berth runs no images: docker create / docker run say so and point at `berth run`.
    for args in [&["create", "busybox"][..], &["run", "--rm", "busybox", "true"][..]] {
        let stderr = docker.err(args);
        assert!(stderr.contains("berth run"), "docker {args:?} should point at `berth run`: {stderr:?}");
        assert!(stderr.contains("Error response from daemon:"), "docker {args:?}: {stderr:?}");
    }
    assert!(before == snapshot(), "docker create changed berth's state");

    // The refusal must reach a client that is still sending its body: berthd reads the request
    // before it answers (a create body larger than the socket buffer makes the race certain;
    // the docker CLI's few kilobytes lose it now and then, as "write: broken pipe").
    let answer = host.python_ok(&CREATE_WITH_LARGE_BODY.replace("__SOCK__", &host.socket().display().to_string()));
    assert!(
        !answer.starts_with("FAILED") && answer.contains("berth run"),
        "POST /containers/create with a 512 KiB body: {answer}"
    );
}

/// POST /v1.47/containers/create with a 512 KiB body on a raw connection; prints the answer's
/// status line and whether it mentions `berth run`, or "FAILED: ..." when the body could not be
/// sent or no answer came.
const CREATE_WITH_LARGE_BODY: &str = r#"
import json, socket
s = socket.socket(socket.AF_UNIX)
s.connect('__SOCK__')
body = json.dumps({'Image': 'busybox', 'Env': ['PAD=' + 'a' * 524288]}).encode()
head = b'POST /v1.47/containers/create HTTP/1.1\r\nHost: berthd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n' % len(body)
try:
    s.sendall(head + body)
except OSError as e:
    print('FAILED: sending the body: %r' % e)
    raise SystemExit
s.settimeout(5)
data = b''
try:
    while b'berth run' not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except OSError as e:
    print('FAILED: reading the answer: %r (got %r)' % (e, data[:200]))
    raise SystemExit
text = data.decode(errors='replace')
print(text.split('\r\n')[0], '| mentions berth run' if 'berth run' in text else '| no berth run in %r' % text[:300])
"#;

#[test]
fn docker_events_show_network_create_connect_disconnect_destroy() {
    if !privileged() {
        return;
    }
    let Some(cli) = docker_cli() else { return };
    let host = TestHost::new(&[]);
    let docker = Docker::new(&host, cli);
    host.berth_ok(&["run", "-d", "--name", "evs", "--", "sleep", "600"]);
    let evs_id = s(&host.inspect("evs")["Id"]).to_owned();

    let log = host.dir().join("events.out");
    let errors = host.dir().join("events.err");
    let mut events = Background::spawn(
        docker
            .command(&["events", "--filter", "type=network"])
            .stdout(std::fs::File::create(&log).expect("events log"))
            .stderr(std::fs::File::create(&errors).expect("events stderr")),
    );
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    // The stream is live once a throwaway network's creation shows up in it.
    let mut live = false;
    for i in 0..10 {
        let name = format!("warmup{i}");
        docker.ok(&["network", "create", &name]);
        live = wait_for(Duration::from_secs(1), || read().contains(&format!("name={name}")).then_some(())).is_some();
        docker.ok(&["network", "rm", &name]);
        if live || !events.running() {
            break;
        }
    }
    assert!(
        live,
        "docker events --filter type=network showed no network event (still running: {}); stdout {:?}, stderr {:?}",
        events.running(),
        read(),
        std::fs::read_to_string(&errors).unwrap_or_default()
    );

    // create and connect through the Docker API, disconnect and remove through berth's own:
    // the events are the daemon's, whichever client acted.
    let id = docker.ok(&["network", "create", "--subnet", "10.140.0.0/24", "ev1"]).trim().to_owned();
    docker.ok(&["network", "connect", "ev1", "evs"]);
    host.berth_ok(&["network", "disconnect", "ev1", "evs"]);
    host.berth_ok(&["network", "rm", "ev1"]);
    let done = wait_for(Duration::from_secs(5), || read().contains(&format!("network destroy {id}")).then_some(()));
    let text = read();
    drop(events);
    assert!(done.is_some(), "no destroy event for {id} within 5 s; docker events printed:\n{text}");

    // "<time> network <action> <network id> (container=<id>, name=ev1, type=bridge)"
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            fields.get(1),
            Some(&"network"),
            "an event that is not a network's passed --filter type=network: {line:?}"
        );
        assert!(fields[0].starts_with("20"), "the event's time: {line:?}");
    }
    let ev1: Vec<&str> = text.lines().filter(|l| l.split_whitespace().nth(3) == Some(id.as_str())).collect();
    let actions: Vec<&str> = ev1.iter().filter_map(|l| l.split_whitespace().nth(2)).collect();
    assert_eq!(actions, ["create", "connect", "disconnect", "destroy"], "docker events for ev1:\n{text}");
    for line in &ev1 {
        assert!(line.contains("name=ev1") && line.contains("type=bridge"), "{line:?}");
    }
    for line in &ev1[1..3] {
        assert!(line.contains(&format!("container={evs_id}")), "{line:?}");
    }
}

/// The Python SDK's side of the test: one step per run, its results printed as one JSON object.
const SDK_SCRIPT: &str = r#"
import json, sys
import docker
from docker.types import IPAMConfig, IPAMPool

sock, step = sys.argv[1], sys.argv[2]
client = docker.DockerClient(base_url='unix://' + sock, timeout=30)
out = {}

def error(call):
    try:
        call()
    except docker.errors.APIError as e:
        return {'class': type(e).__name__, 'status': e.status_code, 'explanation': e.explanation, 'text': str(e)}
    return None

def ipam(subnet, gateway=None):
    return IPAMConfig(pool_configs=[IPAMPool(subnet=subnet, gateway=gateway)])

if step == 'setup':
    out['ping'] = client.ping()
    out['version'] = client.version()
    out['api_version'] = client.api.api_version
    net = client.networks.create('s1', driver='bridge', ipam=ipam('10.131.0.0/24', '10.131.0.1'))
    out['created'] = {'id': net.id, 'name': net.name, 'attrs': net.attrs}
    out['by_name'] = [n.name for n in client.networks.list(names=['s1'])]
    out['by_id'] = [n.name for n in client.networks.list(ids=[net.id])]
    out['all'] = sorted(n.name for n in client.networks.list())
    net.connect('web', ipv4_address='10.131.0.50')
    net.reload()
    out['connected'] = net.attrs
    out['net_containers'] = sorted(c.name for c in net.containers)
    out['containers'] = sorted(c.name for c in client.containers.list())
    web = client.containers.get('web')
    try:
        status = web.status
    except (KeyError, TypeError) as e:
        status = 'no State.Status: %r' % e
    out['web'] = {'id': web.id, 'name': web.name, 'status': status, 'attrs': web.attrs, 'ports': web.ports}
elif step == 'teardown':
    net = client.networks.get('s1')
    net.disconnect('web')
    net.reload()
    out['disconnected'] = net.attrs
    web = client.containers.get('web')
    out['web_networks'] = sorted(web.attrs['NetworkSettings']['Networks'])
    out['errors'] = {
        'duplicate': error(lambda: client.networks.create('s1', ipam=ipam('10.132.0.0/24'))),
        'overlap': error(lambda: client.networks.create('s9', ipam=ipam('10.131.0.0/16'))),
        'unknown_network': error(lambda: client.networks.get('nope')),
        'unknown_container': error(lambda: client.containers.get('nope')),
        'connect_unknown': error(lambda: net.connect('nope')),
        'remove_in_use': error(lambda: net.remove()),
        'image': error(lambda: client.containers.create('busybox')),
    }
    client.networks.create('s2', ipam=ipam('10.133.0.0/24'))
    out['prune'] = client.networks.prune()
    out['after_prune'] = sorted(n.name for n in client.networks.list())
print(json.dumps(out))
"#;

/// `target/test-tools/`, where scripts/setup.sh puts what the tests need beyond Debian packages.
/// What Docker's clients read and Docker documents, on the points where berth used to differ:
/// network names (any but the pre-defined ones, 403 for those), `docker info`'s keys, swarm
/// routes outside a swarm (503), `IPAMConfig` read back, the name filter as a regular
/// expression, and `--ip` refused on the default network.
#[test]
fn docker_cli_sees_dockers_names_info_swarm_answers_ipam_config_and_filters() {
    if !privileged() {
        return;
    }
    let Some(cli) = docker_cli() else { return };
    let host = TestHost::new(&[]);
    let docker = Docker::new(&host, cli);

    // Names: "test 01" as a client's own test creates it; the pre-defined ones are refused.
    let id = docker.ok(&["network", "create", "--subnet", "10.140.0.0/24", "test 01"]).trim().to_owned();
    assert_eq!(docker.json(&["network", "inspect", "test 01"])[0]["Id"], id.as_str());
    for name in ["host", "none", "bridge", "default"] {
        let stderr = docker.err(&["network", "create", name]);
        assert!(stderr.contains(&format!("{name} is a pre-defined network and cannot be created")), "{stderr}");
        let (status, _) = host.api("POST", "/v1.47/networks/create", Some(&serde_json::json!({"Name": name})));
        assert_eq!(status, 403, "creating {name}");
    }
    let stderr = docker.err(&["network", "rm", "bridge"]);
    assert!(stderr.contains("bridge is a pre-defined network and cannot be removed"), "{stderr}");
    assert_eq!(host.api("DELETE", "/v1.47/networks/bridge", None).0, 403);

    // The name filter is a regular expression.
    docker.ok(&["network", "create", "--subnet", "10.141.0.0/24", "n1"]);
    docker.ok(&["network", "create", "--subnet", "10.142.0.0/24", "n10"]);
    assert_eq!(docker.network_names(&["--filter", "name=^n1$"]), ["n1"]);
    assert_eq!(docker.network_names(&["--filter", "name=n1"]), ["n1", "n10"]);
    assert_eq!(docker.network_names(&["--filter", "name=^test [0-9]+$"]), ["test 01"]);

    // IPAMConfig: the address asked for, and null without one.
    host.berth_ok(&["run", "-d", "--name", "web", "--network", "n1", "--", "sleep", "600"]);
    docker.ok(&["network", "connect", "--ip", "10.142.0.50", "n10", "web"]);
    let networks = docker.json(&["container", "inspect", "web"])[0]["NetworkSettings"]["Networks"].clone();
    assert_eq!(networks["n10"]["IPAMConfig"], serde_json::json!({"IPv4Address": "10.142.0.50"}), "{networks}");
    assert_eq!(networks["n1"]["IPAMConfig"], Value::Null, "{networks}");
    assert_eq!(
        docker
            .ok(&[
                "container",
                "inspect",
                "--format",
                "{{.NetworkSettings.Networks.n10.IPAMConfig.IPv4Address}}",
                "web"
            ])
            .trim(),
        "10.142.0.50"
    );
    // --ip only on user-defined networks, as Docker says.
    let stderr = docker.err(&["network", "connect", "--ip", "172.17.0.50", "bridge", "web"]);
    assert!(stderr.contains("user specified IP address is supported on user defined networks only"), "{stderr}");

    // docker info: the keys Docker always sends.
    let info = docker.json(&["info", "--format", "{{json .}}"]);
    for key in [
        "Debug",
        "NFd",
        "NGoroutines",
        "Runtimes",
        "DefaultRuntime",
        "IndexServerAddress",
        "RegistryConfig",
        "HttpProxy",
        "HttpsProxy",
        "NoProxy",
    ] {
        assert!(info.get(key).is_some(), "docker info lacks {key}: {info}");
    }
    assert!(info["NFd"].as_u64().is_some_and(|n| n > 3), "{}", info["NFd"]);
    assert!(
        info["Runtimes"].get(info["DefaultRuntime"].as_str().unwrap_or_default()).is_some(),
        "the default runtime is listed: {info}"
    );
    docker.ok(&["info"]);

    // Swarm routes: what a daemon outside a swarm answers.
    let stderr = docker.err(&["node", "ls"]);
    assert!(stderr.contains("This node is not a swarm manager"), "{stderr}");
    let stderr = docker.err(&["swarm", "leave", "--force"]);
    assert!(stderr.contains("This node is not part of a swarm"), "{stderr}");
    for (method, path) in [
        ("GET", "/v1.47/swarm"),
        ("GET", "/v1.47/services"),
        ("POST", "/v1.47/swarm/leave?force=1"),
        ("GET", "/v1.47/nodes/x"),
    ] {
        let (status, body) = host.api(method, path, None);
        assert_eq!(status, 503, "{method} {path}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| m.contains("swarm")), "{method} {path}: {body}");
    }
}

/// Docker's network options through the docker CLI: implemented ones act in the kernel, the
/// rest are refused; `--attachable` is kept; `--ipv6` alone gets a unique local /64; a range
/// published at an offset shows port by port.
#[test]
fn docker_cli_network_options_ipv6_pool_and_offset_ranges() {
    if !privileged() {
        return;
    }
    let Some(cli) = docker_cli() else { return };
    let host = TestHost::new(&[]);
    let docker = Docker::new(&host, cli);
    docker.ok(&[
        "network",
        "create",
        "--subnet",
        "10.143.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "--attachable",
        "apart",
    ]);
    let apart = docker.json(&["network", "inspect", "apart"])[0].clone();
    assert_eq!(apart["Attachable"], true, "{apart}");
    assert_eq!(apart["Options"]["com.docker.network.driver.mtu"], "1400", "{apart}");
    host.serve("server", "apart", &[], &py::tcp_echo_server("0.0.0.0", 7400));
    host.berth_ok(&["run", "-d", "--name", "client", "--network", "apart", "--", "sleep", "600"]);
    let probe = host.python_in("client", &py::tcp_probe(&host.ip_of("server", "apart"), 7400, "icc", 2.0));
    assert!(probe.starts_with("FAILED"), "enable_icc=false set through docker did not keep sandboxes apart: {probe}");
    let mtu = String::from_utf8_lossy(&host.exec("client", "ip -o link show dev eth0").stdout).into_owned();
    assert!(mtu.contains("mtu 1400"), "{mtu}");
    for (args, expected) in [
        (
            &["network", "create", "-o", "com.docker.network.bridge.enable_icc2=false", "x"][..],
            "network option com.docker.network.bridge.enable_icc2 is not supported",
        ),
        (&["network", "create", "--ipam-opt", "foo=bar", "x"][..], "IPAM option foo is not supported"),
        (
            &["network", "connect", "--driver-opt", "foo=bar", "apart", "server"][..],
            "endpoint driver option foo is not supported",
        ),
    ] {
        let stderr = docker.err(args);
        assert!(stderr.contains(expected), "docker {args:?}: {stderr}");
    }
    assert_eq!(docker.network_names(&[]), ["apart", "bridge"]);

    docker.ok(&["network", "create", "--ipv6", "six"]);
    let six = docker.json(&["network", "inspect", "six"])[0].clone();
    let subnets: Vec<&str> =
        six["IPAM"]["Config"].as_array().unwrap().iter().filter_map(|c| c["Subnet"].as_str()).collect();
    assert!(subnets.iter().any(|s| s.starts_with("fd") && s.ends_with("::/64")), "{six}");

    host.berth_ok(&["run", "-d", "--name", "ranged", "-p", "8000-8009:9000-9009", "--", "sleep", "600"]);
    let ports = docker.json(&["container", "inspect", "ranged"])[0]["NetworkSettings"]["Ports"].clone();
    assert_eq!(ports["9003/tcp"][0]["HostPort"], "8003", "{ports}");
    let listed = docker.ok(&["port", "ranged", "9009/tcp"]);
    assert!(listed.contains(":8009"), "{listed}");
}

/// The Python SDK on the same points: it tolerates `swarm.leave(force=True)` on a node outside
/// a swarm only through the 503, reads `info()`, and gets 403 for a pre-defined name.
#[test]
fn python_docker_sdk_sees_dockers_swarm_info_and_predefined_answers() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    let Some(python) = docker_sdk_venv(host.dir()) else { return };
    let script = host.dir().join("sdk-parity.py");
    std::fs::write(&script, SDK_PARITY_SCRIPT).expect("write the SDK script");
    let out = host.command(&python).arg(&script).arg(host.socket()).stdin(Stdio::null()).output().expect("run python");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    let result: Value = serde_json::from_slice(&out.stdout).expect("JSON from the SDK script");
    assert_eq!(result["left"], true, "{result}");
    assert_eq!(result["predefined"]["status"], 403, "{result}");
    assert_eq!(result["predefined"]["explanation"], "host is a pre-defined network and cannot be created", "{result}");
    assert_eq!(result["spaced"], "test 01", "{result}");
    assert_eq!(result["by_regex"], serde_json::json!(["n1"]), "{result}");
    assert!(result["info"]["NGoroutines"].as_u64().is_some_and(|n| n > 0), "{result}");
    assert!(
        result["six"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.starts_with("fd") && s.ends_with("::/64"))),
        "{result}"
    );
    assert_eq!(result["attachable"], true, "{result}");
    assert_eq!(result["option"]["status"], 400, "{result}");
    assert!(
        result["option"]["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("com.docker.network.bridge.nope is not supported")),
        "{result}"
    );
}

const SDK_PARITY_SCRIPT: &str = r#"
import json, sys
import docker
client = docker.DockerClient(base_url='unix://' + sys.argv[1], version='auto')
result = {'left': client.swarm.leave(force=True)}
try:
    client.networks.create('host')
except docker.errors.APIError as e:
    result['predefined'] = {'status': e.status_code, 'explanation': e.explanation}
result['spaced'] = client.networks.create('test 01').name
client.networks.create('n1')
client.networks.create('n10')
result['by_regex'] = sorted(n.name for n in client.networks.list(names=['^n1$']))
six = client.networks.create('six', enable_ipv6=True)
six.reload()
result['six'] = [c['Subnet'] for c in six.attrs['IPAM']['Config']]
att = client.networks.create('att', attachable=True)
att.reload()
result['attachable'] = att.attrs['Attachable']
try:
    client.networks.create('x', options={'com.docker.network.bridge.nope': '1'})
except docker.errors.APIError as e:
    result['option'] = {'status': e.status_code, 'explanation': e.explanation}
result['info'] = client.info()
print(json.dumps(result))
"#;

fn test_tools() -> Option<PathBuf> {
    // target/debug/berth -> target/test-tools
    binary_path("berth").parent().and_then(Path::parent).map(|target| target.join("test-tools"))
}

/// A virtualenv with the docker SDK in `dir`, or None (with a message saying why the test
/// skips). The SDK is installed from the wheels scripts/setup.sh downloaded into
/// target/test-tools/wheels, so the test itself sends nothing outside the machine.
fn docker_sdk_venv(dir: &Path) -> Option<PathBuf> {
    let venv = dir.join("venv");
    let why = |out: std::io::Result<Output>| match out {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = why(Command::new("python3").arg("-m").arg("venv").arg(&venv).stdin(Stdio::null()).output()) {
        can_run(false, &format!("`python3 -m venv`, which failed (on Debian, install python3-venv): {why}"));
        return None;
    }
    let wheels = test_tools()?.join("wheels");
    let pip = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "--no-index", "--find-links"])
        .arg(&wheels)
        .arg("docker")
        .stdin(Stdio::null())
        .output();
    if let Some(why) = why(pip) {
        can_run(
            false,
            &format!(
                "the docker SDK, which cannot be installed from {} (run scripts/setup.sh): {why}",
                wheels.display()
            ),
        );
        return None;
    }
    Some(venv.join("bin/python"))
}

#[test]
fn python_docker_sdk_drives_networks_and_containers() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    let Some(python) = docker_sdk_venv(host.dir()) else { return };
    let script = host.dir().join("sdk.py");
    std::fs::write(&script, SDK_SCRIPT).expect("write the SDK script");
    let sdk = |step: &str| -> Value {
        let out = host
            .command(&python)
            .arg(&script)
            .arg(host.socket())
            .arg(step)
            .stdin(Stdio::null())
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "the docker SDK's {step} step failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{step}: no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    };

    host.berth_ok(&["network", "create", "--subnet", "10.130.0.0/24", "s0"]);
    host.serve("web", "s0", &["8080:80"], &py::tcp_echo_server("0.0.0.0", 80));
    let setup = sdk("setup");

    let version = host.berth_json(&["version"]);
    assert_eq!(setup["ping"], true, "client.ping()");
    assert_eq!(setup["version"]["Version"], version["Version"], "client.version(): {}", setup["version"]);
    assert_eq!(setup["api_version"], setup["version"]["ApiVersion"], "the SDK uses the API version berthd offers");

    let s1 = host.berth_json(&["network", "inspect", "s1"])[0].clone();
    assert_eq!(setup["created"]["id"], s1["Id"]);
    assert_eq!(setup["created"]["name"], "s1");
    assert_eq!(s1["IPAM"]["Config"][0]["Subnet"], "10.131.0.0/24", "{s1}");
    assert_eq!(s1["IPAM"]["Config"][0]["Gateway"], "10.131.0.1", "{s1}");
    assert_eq!(setup["by_name"], serde_json::json!(["s1"]), "networks.list(names=['s1'])");
    assert_eq!(setup["by_id"], serde_json::json!(["s1"]), "networks.list(ids=[id])");
    assert_eq!(setup["all"], serde_json::json!(["bridge", "s0", "s1"]), "networks.list()");

    let web = host.inspect("web");
    let web_id = s(&web["Id"]).to_owned();
    assert_eq!(web["NetworkSettings"]["Networks"]["s1"]["IPAddress"], "10.131.0.50", "{web}");
    assert_network_matches(&setup["connected"], &s1);
    assert_eq!(setup["connected"]["Containers"][&web_id]["IPv4Address"], "10.131.0.50/24");
    assert_eq!(setup["net_containers"], serde_json::json!(["web"]), "network.containers");
    assert_eq!(setup["containers"], serde_json::json!(["web"]), "containers.list()");
    assert_eq!(setup["web"]["id"], web["Id"]);
    assert_eq!(setup["web"]["name"], "web");
    assert_eq!(setup["web"]["status"], "running");
    assert_container_matches(&setup["web"]["attrs"], &web);
    assert_eq!(setup["web"]["ports"], web["NetworkSettings"]["Ports"], "container.ports");

    // The address the SDK asked for answers, from another sandbox on s1.
    host.berth_ok(&["run", "-d", "--name", "client", "--network", "s1", "--", "sleep", "600"]);
    assert_eq!(host.python_in("client", &py::tcp_client("10.131.0.50", 80, "sdk")), "echo:sdk");

    let teardown = sdk("teardown");
    let web = host.inspect("web");
    assert!(web["NetworkSettings"]["Networks"].get("s1").is_none(), "{web}");
    assert_eq!(teardown["web_networks"], serde_json::json!(["s0"]));
    assert_network_matches(&teardown["disconnected"], &host.berth_json(&["network", "inspect", "s1"])[0]);
    let probe = host.python_in("client", &py::tcp_probe("10.131.0.50", 80, "gone", 1.0));
    assert!(probe.starts_with("FAILED"), "10.131.0.50 still answers after disconnect: {probe:?}");

    // Errors: APIError (NotFound for 404) with berth's own message as the explanation.
    let errors = &teardown["errors"];
    let expected: &[(&str, &str, Vec<&str>)] = &[
        ("duplicate", "APIError", vec!["network", "create", "--subnet", "10.132.0.0/24", "s1"]),
        ("overlap", "APIError", vec!["network", "create", "--subnet", "10.131.0.0/16", "s9"]),
        ("unknown_network", "NotFound", vec!["network", "inspect", "nope"]),
        ("unknown_container", "NotFound", vec!["inspect", "nope"]),
        ("connect_unknown", "NotFound", vec!["network", "connect", "s1", "nope"]),
        ("remove_in_use", "APIError", vec!["network", "rm", "s1"]),
    ];
    let mut failures = Vec::new();
    for (case, class, berth_args) in expected {
        let message = berth_message(&host, berth_args);
        let got = &errors[case];
        if got["class"] != *class || got["explanation"] != message.as_str() {
            failures.push(format!("{case}: expected {class} with explanation {message:?}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "SDK errors:\n{}", failures.join("\n"));
    let image = &errors["image"];
    assert!(
        image["explanation"].as_str().is_some_and(|e| e.contains("berth run")),
        "containers.create('busybox'): {image}"
    );

    // prune took s2 only (s0 has web, s1 has client).
    assert_eq!(teardown["prune"]["NetworksDeleted"], serde_json::json!(["s2"]), "networks.prune()");
    assert_eq!(teardown["after_prune"], serde_json::json!(["bridge", "s0", "s1"]));
}

//! nat-bench: how the time to publish a port grows with the number already published. It makes
//! one network and one sandbox (or --sandboxes N), then publishes N single ports on it one request at a time
//! (`POST /v1/sandboxes/{sandbox}/ports`, what `berth port add` sends), timing every request at
//! the API (the CLI's process start-up is left out), and reads berthd's RSS before and after
//! (berthd holds a bound socket per published host port). Prints one JSON object; the ratio of
//! the median of the last 10 calls to the median of the first 10 says whether adding a mapping is
//! O(1). It stops at the first refused request and reports where and why.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth::client::{route, Client};
use berth_bench::{ms, open_fds, percentile, status_kib};
use berth_types::{IpamConfig, NetworkCreate, PortProtocol, PortRange, PortSpec, PortsChange, SandboxCreate, Version};
use clap::Parser;
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// berthd's API socket.
    #[arg(long)]
    socket: PathBuf,
    /// How many ports to publish.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// The first host port; the others follow it (container port: the same as the host port).
    #[arg(long, default_value_t = 30000)]
    first_port: u16,
    /// The subnet of the network the sandboxes are made on.
    #[arg(long, default_value = "10.91.0.0/24")]
    subnet: String,
    /// Spread the ports round-robin over this many sandboxes (1: all on one). Each answer holds
    /// the sandbox's own ports, so spreading them shows what grows with the answer's size.
    #[arg(long, default_value_t = 1)]
    sandboxes: usize,
}

/// The `p` quantile of unsorted samples, in milliseconds.
fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    ms(percentile(&sorted, p))
}

fn median(samples: &[Duration]) -> f64 {
    percentile_ms(samples, 0.5)
}

fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS:").context("cannot read berthd's resident memory")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        usize::from(args.first_port) + args.count <= 65536,
        "{} ports from {} run past 65535",
        args.count,
        args.first_port
    );
    let client = Client::new(&args.socket);
    let version: Version = serde_json::from_value(client.get(&route(&["version"])).await?)?;
    let network = NetworkCreate {
        name: "bench-many".into(),
        ipam_config: vec![IpamConfig { subnet: Some(args.subnet.clone()), ..Default::default() }],
        ..Default::default()
    };
    client.post(&route(&["networks"]), &network).await?;
    let names: Vec<String> = (0..args.sandboxes.max(1)).map(|i| format!("bench-many-{i}")).collect();
    for name in &names {
        let sandbox = SandboxCreate {
            name: name.clone(),
            network_mode: Some(berth_types::NetworkMode::Network("bench-many".into())),
            ..Default::default()
        };
        client.post(&route(&["sandboxes"]), &sandbox).await?;
    }
    let paths: Vec<String> = names.iter().map(|name| route(&["sandboxes", name, "ports"])).collect();
    let rss_before = rss_kib(version.pid)?;
    let fds_before = open_fds(version.pid);

    let mut samples = Vec::with_capacity(args.count);
    let mut failure = None;
    let started = Instant::now();
    for i in 0..args.count {
        let port = args.first_port + i as u16;
        let ports = PortRange::single(port);
        let spec =
            PortSpec { host_ip: None, host_ports: Some(ports), container_ports: ports, protocol: PortProtocol::Tcp };
        let change = PortsChange { ports: vec![spec] };
        let start = Instant::now();
        let answer = client.post(&paths[i % paths.len()], &change).await;
        let took = start.elapsed();
        match answer {
            Ok(_) => samples.push(took),
            Err(error) => {
                failure = Some(json!({"at": i + 1, "port": port, "message": error.to_string()}));
                break;
            }
        }
    }
    let total = started.elapsed();
    let rss_after = rss_kib(version.pid)?;
    let fds_after = open_fds(version.pid);

    let first = &samples[..samples.len().min(10)];
    let last = &samples[samples.len().saturating_sub(10)..];
    let report = json!({
        "requested": args.count,
        "sandboxes": names.len(),
        "published": samples.len(),
        "failure": failure,
        "first10_p50_ms": median(first),
        "last10_p50_ms": median(last),
        "ratio_last_to_first": median(last) / median(first),
        "p50_ms": percentile_ms(&samples, 0.5),
        "p99_ms": percentile_ms(&samples, 0.99),
        "max_ms": percentile_ms(&samples, 1.0),
        "total_s": total.as_secs_f64(),
        "all_ms": samples.iter().map(|d| (ms(*d) * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
        "rss_kib_before": rss_before,
        "rss_kib_after": rss_after,
        "fds_before": fds_before,
        "fds_after": fds_after,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

//! Routed ports: on a network whose gateway mode is `routed` for a family, the sandbox's
//! published container ports are open from outside at its own address of that family (set
//! elements of berth's table), besides any DNAT from the host's ports. Two mappings of one
//! container port share its element: it is opened with the first and closed with the last.

use std::sync::Arc;

use berth_firewall::{RoutedPort, Ruleset};

use super::{leads_to, Destination, PortPublisher, Publication, Reservation};
use crate::error::Result;
use crate::firewall::BlockingFirewall;

#[derive(Debug)]
pub struct RoutedPorts {
    firewall: Arc<BlockingFirewall>,
}

impl RoutedPorts {
    pub fn new(firewall: Arc<BlockingFirewall>) -> Self {
        Self { firewall }
    }
}

/// The container ports of a publication open at its routed addresses, one per port.
fn routed_ports(publication: &Publication<'_>) -> Vec<RoutedPort> {
    ports_of(publication.destination, publication.reservations)
}

/// Those of a publication's routed ports that its sandbox's other mappings do not open too:
/// what publishing it opens, and what withdrawing it closes.
fn own_routed_ports(publication: &Publication<'_>) -> Vec<RoutedPort> {
    let shared = ports_of(publication.destination, publication.others);
    let mut own = routed_ports(publication);
    own.retain(|p| !shared.contains(p));
    own.sort();
    own.dedup();
    own
}

fn ports_of(destination: &Destination, reservations: &[Reservation]) -> Vec<RoutedPort> {
    let addresses = &destination.routed;
    reservations
        .iter()
        .map(|r| &r.mapping)
        .flat_map(|m| {
            addresses.iter().filter(|a| leads_to(m, **a)).flat_map(move |address| {
                (m.container_ports.start..=m.container_ports.end).map(move |port| RoutedPort {
                    protocol: m.protocol,
                    address: *address,
                    port,
                })
            })
        })
        .collect()
}

impl PortPublisher for RoutedPorts {
    fn publish(&self, publication: &Publication<'_>) -> Result<()> {
        Ok(self.firewall.add_routed_ports(&own_routed_ports(publication))?)
    }

    fn unpublish(&self, publication: &Publication<'_>) -> Result<()> {
        Ok(self.firewall.remove_routed_ports(&own_routed_ports(publication))?)
    }

    fn redirect(&self, before: &Publication<'_>, after: &Publication<'_>) -> Result<()> {
        let (before, after) = (own_routed_ports(before), own_routed_ports(after));
        let closed: Vec<RoutedPort> = before.iter().filter(|p| !after.contains(p)).copied().collect();
        let opened: Vec<RoutedPort> = after.iter().filter(|p| !before.contains(p)).copied().collect();
        Ok(self.firewall.remove_routed_ports(&closed).and_then(|()| self.firewall.add_routed_ports(&opened))?)
    }

    fn add_to_ruleset(&self, all: &[Publication<'_>], ruleset: &mut Ruleset) {
        ruleset.routed_ports.extend(all.iter().flat_map(routed_ports));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use berth_firewall::{Dnat, Firewall, FirewallError};
    use berth_types::{PortMapping, PortProtocol, PortRange};

    use super::*;

    /// Holds routed ports as berth's table does: closing one that is not open fails.
    #[derive(Debug, Default, Clone)]
    struct Table(Arc<Mutex<BTreeSet<RoutedPort>>>);

    impl Firewall for Table {
        fn apply(&self, _: &Ruleset) -> Result<(), FirewallError> {
            Ok(())
        }
        fn add_dnats(&self, _: &[Dnat]) -> Result<(), FirewallError> {
            Ok(())
        }
        fn remove_dnats(&self, _: &[Dnat]) -> Result<(), FirewallError> {
            Ok(())
        }
        fn add_routed_ports(&self, ports: &[RoutedPort]) -> Result<(), FirewallError> {
            self.0.lock().unwrap().extend(ports);
            Ok(())
        }
        fn remove_routed_ports(&self, ports: &[RoutedPort]) -> Result<(), FirewallError> {
            let mut open = self.0.lock().unwrap();
            if ports.iter().any(|p| !open.contains(p)) {
                return Err(FirewallError::Nft { action: "close".into(), message: "No such file or directory".into() });
            }
            ports.iter().for_each(|p| {
                open.remove(p);
            });
            Ok(())
        }
        fn matches(&self, _: &Ruleset) -> Result<bool, FirewallError> {
            Ok(true)
        }
    }

    fn reservation(host_port: u16, container_port: u16) -> Reservation {
        Reservation {
            mapping: PortMapping {
                protocol: PortProtocol::Tcp,
                host_ip: None,
                host_ports: PortRange::single(host_port),
                container_ports: PortRange::single(container_port),
            },
            sockets: Vec::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn two_mappings_of_one_container_port_share_its_element() {
        let table = Table::default();
        let routed = RoutedPorts::new(Arc::new(BlockingFirewall::new(Box::new(table.clone()))));
        let address = "10.9.0.2".parse().unwrap();
        let destination = Destination { addresses: vec![address], routed: vec![address], default_host_ip: None };
        let (first, second) = ([reservation(8080, 80)], [reservation(9090, 80)]);
        let publication =
            |reservations, others| Publication { sandbox: "web", destination: &destination, reservations, others };
        let open = || table.0.lock().unwrap().clone();
        let element = RoutedPort { protocol: PortProtocol::Tcp, address, port: 80 };

        routed.publish(&publication(&first, &[])).unwrap();
        routed.publish(&publication(&second, &first)).unwrap();
        assert_eq!(open(), BTreeSet::from([element]));
        routed.unpublish(&publication(&first, &second)).unwrap();
        assert_eq!(open(), BTreeSet::from([element]), "the other mapping still needs it");
        routed.unpublish(&publication(&second, &[])).unwrap();
        assert_eq!(open(), BTreeSet::new(), "closed with the last mapping");
    }
}

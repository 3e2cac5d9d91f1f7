//! The event bus: commands publish what they changed (a network created or removed, a sandbox
//! connected, started, stopped, removed) once it is committed, in Docker's event shape, and
//! `GET /events` subscribes. The last events are kept so a subscriber asking for past ones
//! (`since`) gets them. Publishing never blocks or fails a command: a subscriber that falls
//! behind loses events, not the daemon. Closing the bus tells every subscriber to stop, so a
//! stopping daemon does not wait for clients that would listen forever.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use berth_types::{Event, EventActor, NetworkRecord, SandboxRecord, SANDBOX_IMAGE};
use tokio::sync::{broadcast, watch};

use crate::ids;

/// How many past events are kept for `since` (as many as Docker keeps).
const KEPT_EVENTS: usize = 256;

/// How many events a subscriber may fall behind before it loses some.
const SUBSCRIBER_BACKLOG: usize = 1024;

/// What happened, in Docker's words.
#[derive(Debug, Clone, Copy)]
pub(super) enum Action {
    Create,
    Connect,
    Disconnect,
    Destroy,
    Start,
    Die,
    Stop,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Connect => "connect",
            Self::Disconnect => "disconnect",
            Self::Destroy => "destroy",
            Self::Start => "start",
            Self::Die => "die",
            Self::Stop => "stop",
        }
    }
}

#[derive(Debug)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
    kept: Mutex<VecDeque<Event>>,
    /// Becomes true when the daemon stops.
    closed: watch::Sender<bool>,
}

/// What a subscriber gets: the kept events, every later one, and word of the bus closing.
#[derive(Debug)]
pub struct Subscription {
    pub kept: Vec<Event>,
    pub receiver: broadcast::Receiver<Event>,
    pub closed: watch::Receiver<bool>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(SUBSCRIBER_BACKLOG).0,
            kept: Mutex::new(VecDeque::with_capacity(KEPT_EVENTS)),
            closed: watch::channel(false).0,
        }
    }
}

impl EventBus {
    /// A network was created or removed.
    pub(super) fn network(&self, action: Action, network: &NetworkRecord) {
        self.publish("network", action, &network.id, network_attributes(network));
    }

    /// A sandbox was connected to or disconnected from a network.
    pub(super) fn endpoint(&self, action: Action, network: &NetworkRecord, sandbox: &SandboxRecord) {
        let mut attributes = network_attributes(network);
        attributes.insert("container".into(), sandbox.id.clone());
        self.publish("network", action, &network.id, attributes);
    }

    /// A sandbox was connected to (or disconnected from) each network it has an endpoint on.
    pub(super) fn endpoints(
        &self,
        action: Action,
        networks: &BTreeMap<String, NetworkRecord>,
        sandbox: &SandboxRecord,
    ) {
        for endpoint in &sandbox.endpoints {
            if let Some(network) = networks.get(&endpoint.network_id) {
                self.endpoint(action, network, sandbox);
            }
        }
    }

    /// A sandbox (a container, to Docker) was created, started, stopped or removed.
    pub(super) fn sandbox(&self, action: Action, sandbox: &SandboxRecord) {
        let attributes =
            BTreeMap::from([("name".to_owned(), sandbox.name.clone()), ("image".to_owned(), SANDBOX_IMAGE.to_owned())]);
        self.publish("container", action, &sandbox.id, attributes);
    }

    fn publish(&self, kind: &str, action: Action, id: &str, attributes: BTreeMap<String, String>) {
        let time_nano = ids::unix_nanos_now();
        let event = Event {
            kind: kind.into(),
            action: action.as_str().into(),
            actor: EventActor { id: id.into(), attributes },
            scope: "local".into(),
            time: time_nano.div_euclid(1_000_000_000),
            time_nano,
        };
        let mut kept = self.kept.lock().expect("the event list is never poisoned");
        if kept.len() == KEPT_EVENTS {
            kept.pop_front();
        }
        kept.push_back(event.clone());
        // No subscriber is not an error.
        let _ = self.sender.send(event);
    }

    /// The kept events and a receiver of every later one, none lost or repeated in between.
    pub fn subscribe(&self) -> Subscription {
        let kept = self.kept.lock().expect("the event list is never poisoned");
        Subscription {
            kept: kept.iter().cloned().collect(),
            receiver: self.sender.subscribe(),
            closed: self.closed.subscribe(),
        }
    }

    /// Tells every subscriber, present and future, to stop.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }
}

fn network_attributes(network: &NetworkRecord) -> BTreeMap<String, String> {
    BTreeMap::from([("name".to_owned(), network.name.clone()), ("type".to_owned(), network.driver.clone())])
}

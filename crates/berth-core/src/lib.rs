//! berth's core, a library so that every front end shares it: berthd's HTTP APIs today, a CNI
//! plugin and a Docker network plugin later. [`controller::Controller`] runs each command as a
//! transaction over the store, the drivers, the firewall and the [`host::Host`]; reconcile
//! brings the kernel back to the store on start. Nothing here speaks HTTP.

pub mod controller;
pub mod error;
mod firewall;
pub mod host;
pub mod ids;
pub mod ports;
mod sandbox_files;

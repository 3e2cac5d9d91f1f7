//! The library half of the berth CLI: the HTTP client of berthd's API, shared with the
//! benchmarks in bench/ so they speak to the daemon exactly as the CLI does.

pub mod client;

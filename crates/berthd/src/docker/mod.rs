//! The Docker Engine API over berth's core (docs/docker-api.md): Docker's requests become calls
//! of the controller's own commands, berth's views are rendered in Docker's shapes, and Docker's
//! filters pick what is listed. It is the one place where Docker's shapes are converted; it
//! reads only the controller's views and writes nothing itself — every change goes through the
//! commands berth's own API uses. api/docker/ serves it over HTTP.

pub mod containers;
pub mod events;
mod filters;
pub mod networks;
pub mod system;

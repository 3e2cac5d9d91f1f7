//! The Docker Engine API over berth's commands (docs/docker-api.md): Docker's requests become
//! calls of the controller's own commands, berth's views are rendered in Docker's shapes, and
//! Docker's filters pick what is listed. It is the one place where Docker's shapes are converted;
//! it writes nothing itself — every change goes through the commands berth's own API uses.

mod containers;
mod events;
mod filters;
mod networks;
mod system;

//! The one berth crate allowed `unsafe`: Linux namespaces, mounts, sysctls and the set-up of a
//! process that runs inside a sandbox. Every `unsafe` block carries a `// SAFETY:` line. Nothing
//! here knows about networks or the store; callers pass paths and names.

pub mod fdpass;
pub mod netns;
pub mod process;
pub mod sysctl;

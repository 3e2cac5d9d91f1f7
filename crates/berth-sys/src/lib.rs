//! The one berth crate allowed `unsafe`: Linux namespaces, mounts, sysctls, the open-file
//! limit, the set-up of a process that runs inside a sandbox, pidfds that signal a registered
//! process and no other, batched UDP I/O (`recvmmsg`/`sendmmsg`), and the throttle for warnings
//! that socket loops can hit thousands of times a second. Every `unsafe` block carries a
//! `// SAFETY:` line. Nothing here knows about networks or the store; callers pass paths, names
//! and sockets.

// The one crate where the workspace's `unsafe_code = "deny"` is lifted; every block still needs
// its SAFETY line (clippy::undocumented_unsafe_blocks).
#![allow(unsafe_code)]

pub mod fdpass;
pub mod limits;
pub mod log_throttle;
pub mod netns;
pub mod process;
pub mod process_identity;
pub mod sysctl;
pub mod udp_batch;
pub mod userns;

#![recursion_limit = "256"]

//! Integration tests: an unmodified kube::Client over HTTP against the local API server.

#[path = "server/common.rs"]
mod common;

#[path = "server/apply.rs"]
mod apply;
#[path = "server/cel.rs"]
mod cel;
#[path = "server/controller.rs"]
mod controller;
#[path = "server/crds.rs"]
mod crds;
#[path = "server/crud.rs"]
mod crud;
#[path = "server/deletion.rs"]
mod deletion;
#[path = "server/discovery.rs"]
mod discovery;
#[path = "server/faults.rs"]
mod faults;
#[path = "server/list_watch.rs"]
mod list_watch;
#[path = "server/patch.rs"]
mod patch;
#[path = "server/ratcheting.rs"]
mod ratcheting;
#[path = "server/rbac.rs"]
mod rbac;
#[path = "server/tokens.rs"]
mod tokens;
#[path = "server/version.rs"]
mod version;
#[path = "server/workloads.rs"]
mod workloads;

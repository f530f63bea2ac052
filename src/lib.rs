//! hardened-csi-operator: runs the AWS EBS CSI driver from Docker Hardened Images, declared by one
//! cluster-scoped `HardenedCsiDriver`. Read `ARCHITECTURE.md` first.
//!
//! Layers, each importing only the ones below it (`make lint` checks this):
//!
//! - `commands`: the subcommands (`run`, `render`, `doctor`, `crd`, `operator-rbac`); each parses
//!   its flags and wires the layers below together. `main.rs` only dispatches to them.
//! - `reconciler`: the watch-driven loop that turns a HardenedCsiDriver into applied children,
//!   guards deletion, and computes every condition of the status from what it observed.
//! - `runtime`: process services shared by the commands: configuration, HTTP probes and metrics,
//!   leader election, shutdown, logging.
//! - `aws`: what AWS says (inventory, orphans, IAM preflight) behind the `AwsApi` trait, and the
//!   poller that refreshes it on its own interval and hands the facts to the reconciler.
//! - `render`: pure builders of every child object (one file per object family), no I/O.
//! - `crd`: the API types (spec, status, condition names), parsing and validation; a leaf.

pub mod aws;
pub mod commands;
pub mod crd;
pub mod reconciler;
pub mod render;
pub mod runtime;

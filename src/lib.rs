//! hardened-csi-operator: runs the AWS EBS CSI driver from Docker Hardened Images, declared by one
//! cluster-scoped `HardenedCsiDriver`.
//!
//! - `crd`: the API types and their validation.
//! - `render`: the pure builders of every child object.
//! - `aws`: the AWS inventory, IAM preflight and `doctor`.
//! - `metrics`: the Prometheus registry.

pub mod aws;
pub mod config;
pub mod controller;
pub mod crd;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod permissions;
pub mod render;
pub mod run;
pub mod shutdown;
pub mod telemetry;

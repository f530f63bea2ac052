//! hardened-csi-operator: runs the AWS EBS CSI driver from Docker Hardened Images, declared by one
//! cluster-scoped `HardenedCsiDriver`.

pub mod aws;
pub mod crd;
pub mod metrics;
pub mod config;
pub mod http;
pub mod leader;
pub mod shutdown;
pub mod telemetry;

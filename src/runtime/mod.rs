//! Process services the commands share, independent of what the operator reconciles.
//!
//! - `config`: the `run` flags and the Kubernetes client they describe.
//! - `http`: `/livez`, `/readyz` and `/metrics`, and the readiness flag.
//! - `leader`: leader election on a Lease and running work only while leading.
//! - `metrics`: the Prometheus registry, composed of the reconciler's and the AWS layer's families.
//! - `shutdown`: one cancellation token fanned out to every task, from SIGTERM/SIGINT.
//! - `telemetry`: logging (text or JSON).

pub mod config;
pub mod http;
pub mod kube_metrics;
pub mod leader;
pub mod metrics;
mod process;
pub mod shutdown;
pub mod telemetry;

//! What AWS says about the driver's storage: the EBS inventory, orphaned and stuck volumes,
//! snapshots and the IAM preflight, behind a trait so tests can use moto or mocks.

pub mod status;

//! The `HardenedCsiDriver` API (group `csi.hardened.dev`, version `v1alpha1`): the spec users
//! write, the status the operator reports, and the cross-field rules both the API server (as CEL)
//! and the operator (in Rust, with field paths) enforce.

mod aws_status;
pub mod conditions;
pub mod duration;
pub mod parse;
mod spec;
mod status;
pub mod validate;
pub mod versions;
pub mod workload;

pub use aws_status::*;
pub use duration::SpecDuration;
pub use spec::*;
pub use status::*;
pub use workload::*;

use kube::CustomResourceExt;

/// The CRD as YAML, exactly what `hardened-csi-operator crd` prints and `crds/` holds.
pub fn crd_yaml() -> String {
    let crd = HardenedCsiDriver::crd();
    // A CRD generated from our own types always serialises.
    serde_yaml_ng::to_string(&crd).expect("CRD serialises to YAML")
}

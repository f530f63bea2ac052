//! `hardened-csi-operator crd`: the CustomResourceDefinition generated from the Rust types,
//! exactly what `crds/` holds (`make crds` writes it, `make crds-check` compares).

use std::process::ExitCode;

pub fn run() -> ExitCode {
    print!("{}", crate::crd::crd_yaml());
    ExitCode::SUCCESS
}

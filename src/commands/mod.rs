//! The subcommands of `hardened-csi-operator`, one module each; `main.rs` dispatches to them.
//!
//! - `run`: the operator process (reconciler, AWS poller, leader election, HTTP, shutdown).
//! - `render`: prints every object the operator would apply for a HardenedCsiDriver manifest.
//! - `doctor`: asks AWS once, as the operator would, and prints the report.
//! - `crd`: prints the CustomResourceDefinition generated from the Rust types.
//! - `operator_rbac`: the operator's own RBAC rules, printed by `operator-rbac`.

pub mod crd;
pub mod doctor;
pub mod operator_rbac;
pub mod render;
pub mod run;

/// Runs `future` to completion on a multi-threaded runtime; exit 1 when none can be started.
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, std::process::ExitCode> {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => Ok(runtime.block_on(future)),
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            Err(std::process::ExitCode::FAILURE)
        }
    }
}

//! `hardened-csi-operator render`: every object the operator would apply for a HardenedCsiDriver
//! manifest, in apply order, through the same parse, validation and builders as the reconciler.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::crd;
use crate::render::{self, Capabilities};

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The HardenedCsiDriver manifest (YAML); `-` reads standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Kubernetes version to render for (major.minor).
    #[arg(long, default_value = "1.33")]
    pub kubernetes_version: String,
    /// Render as if the snapshot API (snapshot.storage.k8s.io/v1) were not installed.
    #[arg(long)]
    pub no_snapshot_api: bool,
}

/// Prints the rendered YAML; exit 2 (as for usage errors) when the manifest is invalid.
pub fn run(args: &RenderArgs) -> ExitCode {
    match render_file(args) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn render_file(args: &RenderArgs) -> Result<String, String> {
    let file = &args.file;
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("reading standard input: {e}"))?
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?
    };
    let version = &args.kubernetes_version;
    let kubernetes_version = Capabilities::parse_version(version)
        .ok_or_else(|| format!("--kubernetes-version: {version:?} is not a version like 1.33"))?;
    let hcd =
        crd::parse::from_yaml(&text).map_err(|e| format!("{}: invalid HardenedCsiDriver: {e}", file.display()))?;
    let caps = Capabilities { kubernetes_version, snapshot_api: !args.no_snapshot_api, ..Capabilities::default() };
    let children =
        render::render(&hcd, &caps).map_err(|e| format!("{}: invalid HardenedCsiDriver: {e}", file.display()))?;
    Ok(render::to_yaml(&children))
}

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
    #[arg(short = 'f', long = "filename", required_unless_present = "list_versions")]
    pub file: Option<PathBuf>,
    /// Print the driver releases `spec.version` selects from, with their images, and exit.
    #[arg(long, conflicts_with = "file")]
    pub list_versions: bool,
    /// Kubernetes version to render for (major.minor).
    #[arg(long, default_value = "1.33")]
    pub kubernetes_version: String,
    /// Render as if the snapshot API (snapshot.storage.k8s.io/v1) were not installed.
    #[arg(long)]
    pub no_snapshot_api: bool,
    /// Render as if the Prometheus Operator's ServiceMonitor (monitoring.coreos.com/v1) were not
    /// installed.
    #[arg(long)]
    pub no_service_monitor_api: bool,
    /// The storage.k8s.io version serving VolumeAttributesClass: `v1`, `v1beta1` or `none`.
    /// Default: `v1` from Kubernetes 1.34, `none` before (v1beta1 is off by default).
    #[arg(long, value_parser = ["v1", "v1beta1", "none"])]
    pub volume_attributes_class_api: Option<String>,
}

/// Prints the rendered YAML; exit 2 (as for usage errors) when the manifest is invalid.
pub fn run(args: &RenderArgs) -> ExitCode {
    if args.list_versions {
        print!("{}", crd::versions::table());
        return ExitCode::SUCCESS;
    }
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
    let Some(file) = &args.file else { return Err("-f/--filename is required".into()) };
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
    let volume_attributes_class_api = match args.volume_attributes_class_api.as_deref() {
        Some("none") => None,
        Some(v) => render::VOLUME_ATTRIBUTES_CLASS_VERSIONS.into_iter().find(|s| *s == v),
        None => (kubernetes_version >= (1, 34)).then_some("v1"),
    };
    let caps = Capabilities {
        kubernetes_version,
        snapshot_api: !args.no_snapshot_api,
        service_monitor_api: !args.no_service_monitor_api,
        volume_attributes_class_api,
        ..Capabilities::default()
    };
    let children =
        render::render(&hcd, &caps).map_err(|e| format!("{}: invalid HardenedCsiDriver: {e}", file.display()))?;
    Ok(render::to_yaml(&children))
}

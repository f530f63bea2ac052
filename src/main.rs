//! The `hardened-csi-operator` command: parses the CLI and hands each subcommand to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hardened_csi_operator::crd;
use hardened_csi_operator::render::{self, Capabilities};

#[derive(Parser)]
#[command(name = "hardened-csi-operator", version, about = "Runs the AWS EBS CSI driver from Docker Hardened Images")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the HardenedCsiDriver CustomResourceDefinition as YAML.
    Crd,
    /// Print every object the operator would create for a HardenedCsiDriver, in apply order.
    Render {
        /// The HardenedCsiDriver manifest (YAML); `-` reads standard input.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Kubernetes version to render for (major.minor).
        #[arg(long, default_value = "1.33")]
        kubernetes_version: String,
        /// Render as if the snapshot API (snapshot.storage.k8s.io/v1) were not installed.
        #[arg(long)]
        no_snapshot_api: bool,
    },
    /// Print the RBAC rules the operator itself needs (cluster, driver namespace, own namespace).
    OperatorRbac,
    /// Run the operator: watch HardenedCsiDriver objects and reconcile the driver.
    Run(hardened_csi_operator::config::RunArgs),
    /// Check AWS for the driver once: IAM permissions, encryption, zones, volumes, snapshots,
    /// orphans. Exit 0 all granted, 1 permissions missing, 3 AWS could not be asked.
    Doctor(hardened_csi_operator::aws::doctor::DoctorArgs),
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("error: starting the async runtime: {e}");
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            match runtime.block_on(hardened_csi_operator::run::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Doctor(args) => {
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            match runtime.block_on(hardened_csi_operator::aws::doctor::run_doctor(args)) {
                Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Crd => {
            print!("{}", crd::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::OperatorRbac => {
            print!(
                "{}",
                serde_yaml_ng::to_string(&hardened_csi_operator::permissions::operator_rbac())
                    .expect("rules serialise")
            );
            ExitCode::SUCCESS
        }
        Command::Render { file, kubernetes_version, no_snapshot_api } => {
            match render_file(&file, &kubernetes_version, !no_snapshot_api) {
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
    }
}

fn render_file(file: &PathBuf, version: &str, snapshot_api: bool) -> Result<String, String> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("reading standard input: {e}"))?
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?
    };
    let kubernetes_version = Capabilities::parse_version(version)
        .ok_or_else(|| format!("--kubernetes-version: {version:?} is not a version like 1.33"))?;
    let hcd =
        crd::parse::from_yaml(&text).map_err(|e| format!("{}: invalid HardenedCsiDriver: {e}", file.display()))?;
    let caps = Capabilities { kubernetes_version, snapshot_api };
    let children =
        render::render(&hcd, &caps).map_err(|e| format!("{}: invalid HardenedCsiDriver: {e}", file.display()))?;
    Ok(render::to_yaml(&children))
}

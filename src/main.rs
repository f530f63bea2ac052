//! The `hardened-csi-operator` command: parses the CLI and hands each subcommand to
//! `hardened_csi_operator::commands`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hardened_csi_operator::commands::{self, doctor::DoctorArgs, render::RenderArgs};
use hardened_csi_operator::runtime::config::RunArgs;

/// jemalloc returns freed pages to the system after its decay time; glibc's arenas kept what an
/// inventory refresh freed (Cargo.toml says by how much).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    Render(RenderArgs),
    /// Print the RBAC rules the operator itself needs (cluster, driver namespace, own namespace).
    OperatorRbac,
    /// Run the operator: watch HardenedCsiDriver objects and reconcile the driver.
    Run(RunArgs),
    /// Check AWS for the driver once: IAM permissions, encryption, zones, volumes, snapshots,
    /// orphans. Exit 0 all granted, 1 permissions missing, 3 AWS could not be asked.
    Doctor(DoctorArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => commands::run::main(args),
        Command::Doctor(args) => commands::doctor::main(args),
        Command::Crd => commands::crd::run(),
        Command::OperatorRbac => commands::operator_rbac::run(),
        Command::Render(args) => commands::render::run(&args),
    }
}

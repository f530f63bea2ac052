//! `local-apiserver --port PORT --kubeconfig FILE [--kubernetes-version 1.33]
//! [--authorization-mode=RBAC]`: serves the in-memory API server until SIGTERM or SIGINT, after
//! writing a kubeconfig for it.

use std::path::PathBuf;

use clap::Parser;
use local_apiserver::{LocalApiServer, Options};

#[derive(Parser, Debug)]
#[command(name = "local-apiserver", about = "In-memory Kubernetes API server for tests and demos")]
struct Cli {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, env = "LOCAL_APISERVER_PORT", default_value_t = 0)]
    port: u16,
    /// Where to write the kubeconfig.
    #[arg(long, env = "LOCAL_APISERVER_KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Kubernetes version reported by /version (change it while running with
    /// POST /local-apiserver/version {"kubernetesVersion": "1.34"}).
    #[arg(long, env = "LOCAL_APISERVER_KUBERNETES_VERSION", default_value = "1.33")]
    kubernetes_version: String,
    /// Do not simulate Deployment/DaemonSet status.
    #[arg(long)]
    no_simulate_workloads: bool,
    /// `AlwaysAllow` (no authentication) or `RBAC` (bearer tokens and RBAC, as kube-apiserver's
    /// `--authorization-mode=RBAC`; the written kubeconfig then holds the admin token).
    #[arg(long, env = "LOCAL_APISERVER_AUTHORIZATION_MODE", default_value = "AlwaysAllow")]
    authorization_mode: local_apiserver::Authorization,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let opts = Options {
        kubernetes_version: cli.kubernetes_version,
        simulate_workloads: !cli.no_simulate_workloads,
        port: cli.port,
        authorization: cli.authorization_mode,
        ..Options::default()
    };
    let server = match LocalApiServer::start_with(opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("local-apiserver: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = server.write_kubeconfig(&cli.kubeconfig) {
        eprintln!("local-apiserver: writing kubeconfig {}: {e}", cli.kubeconfig.display());
        return std::process::ExitCode::FAILURE;
    }
    println!("local-apiserver listening on {}", server.url());
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("local-apiserver: installing SIGTERM handler: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(server);
    std::process::ExitCode::SUCCESS
}

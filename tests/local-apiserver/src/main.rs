//! `local-apiserver --port PORT --kubeconfig FILE [--kubernetes-version 1.33]
//! [--authorization-mode=RBAC] [--enable-admission-plugins=OwnerReferencesPermissionEnforcement]
//! [--nodes N] [--private-registries dhi.io]`: serves the in-memory API server until SIGTERM or
//! SIGINT, after writing a kubeconfig for it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use local_apiserver::{ImageFault, KubeletOptions, LocalApiServer, Options};

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
    /// Do not run the workload controllers, scheduler and kubelet stand-in (workloads stay as
    /// written).
    #[arg(long)]
    no_simulate_workloads: bool,
    /// Ready Nodes to create at start (node-0, node-1, ...; labelled kubernetes.io/os=linux).
    #[arg(long, env = "LOCAL_APISERVER_NODES", default_value_t = 0)]
    nodes: usize,
    /// Registries whose images need an image pull secret, comma-separated ("" for none).
    #[arg(long, env = "LOCAL_APISERVER_PRIVATE_REGISTRIES", default_value = "dhi.io")]
    private_registries: String,
    /// How long an image pull takes, in milliseconds.
    #[arg(long, default_value_t = 50)]
    image_pull_ms: u64,
    /// First back-off after a failed pull or a crash, in milliseconds (doubles up to the max).
    #[arg(long, default_value_t = 200)]
    backoff_initial_ms: u64,
    /// Longest back-off, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    backoff_max_ms: u64,
    /// An image whose containers crash shortly after starting (repeatable).
    #[arg(long = "crashing-image")]
    crashing_images: Vec<String>,
    /// An image whose containers never become ready (repeatable).
    #[arg(long = "never-ready-image")]
    never_ready_images: Vec<String>,
    /// `AlwaysAllow` (no authentication) or `RBAC` (bearer tokens and RBAC, as kube-apiserver's
    /// `--authorization-mode=RBAC`; the written kubeconfig then holds the admin token).
    #[arg(long, env = "LOCAL_APISERVER_AUTHORIZATION_MODE", default_value = "AlwaysAllow")]
    authorization_mode: local_apiserver::Authorization,
    /// Admission plugins beyond the defaults, comma-separated (kube-apiserver's flag); only
    /// `OwnerReferencesPermissionEnforcement` (with RBAC) is implemented.
    #[arg(long, env = "LOCAL_APISERVER_ENABLE_ADMISSION_PLUGINS", value_delimiter = ',')]
    enable_admission_plugins: Vec<String>,
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
        kubelet: KubeletOptions {
            image_pull: Duration::from_millis(cli.image_pull_ms),
            backoff_initial: Duration::from_millis(cli.backoff_initial_ms),
            backoff_max: Duration::from_millis(cli.backoff_max_ms.max(cli.backoff_initial_ms)),
            private_registries: cli
                .private_registries
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect(),
            ..KubeletOptions::default()
        },
        nodes: cli.nodes,
        port: cli.port,
        authorization: cli.authorization_mode,
        admission_plugins: cli.enable_admission_plugins,
        ..Options::default()
    };
    let server = match LocalApiServer::start_with(opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("local-apiserver: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    for image in &cli.crashing_images {
        server.set_image_fault(image, ImageFault::Crash);
    }
    for image in &cli.never_ready_images {
        server.set_image_fault(image, ImageFault::NeverReady);
    }
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

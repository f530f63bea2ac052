//! End to end, as a user would: the real binary with a kubeconfig against the local API server
//! (authentication and RBAC on), driven with kubectl. The cluster admin installs the kustomize
//! base's RBAC with kubectl; the operator runs with its ServiceAccount's token and nothing else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use local_apiserver::{Authorization, LocalApiServer, Options};
use serde_json::json;

const OPERATOR_NAMESPACE: &str = "hardened-csi-operator";
const OPERATOR_SA: &str = "hardened-csi-operator";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output().expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let code = body.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body))
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_with_kubeconfig_driven_by_kubectl() {
    let server = LocalApiServer::start_with(Options { authorization: Authorization::Rbac, ..Options::default() })
        .await
        .expect("local API server");
    // What the example asks for before applying: a Node to run on and the dhi.io pull secret.
    server.add_node("node-0", &[("kubernetes.io/os", "linux")], &[]).expect("node");
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "dhi-pull"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": json!({"auths": {"dhi.io": {"auth": "ZGVtbzpkZW1v"}}}).to_string()},
    }))
    .expect("secret");
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(server.client(), "kube-system")
        .create(&Default::default(), &secret)
        .await
        .expect("pull secret");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let kc = kubeconfig.clone();
    // The admin installs the operator's namespace, ServiceAccount and RBAC from deploy/operator.
    tokio::task::spawn_blocking(move || {
        let mut args = vec!["apply".to_string(), "--server-side".into()];
        for f in [
            "namespace",
            "serviceaccount",
            "clusterrole",
            "clusterrolebinding",
            "role-leases",
            "rolebinding-leases",
            "role-driver",
            "role-pull-secrets",
            "driver-rbac",
        ] {
            args.push("-f".into());
            args.push(repo().join(format!("deploy/operator/{f}.yaml")).to_string_lossy().into_owned());
        }
        kubectl(&kc, &args.iter().map(String::as_str).collect::<Vec<_>>());
    })
    .await
    .expect("RBAC installed");
    let operator_kubeconfig = dir.path().join("operator-kubeconfig");
    server
        .write_kubeconfig_for_service_account(&operator_kubeconfig, OPERATOR_NAMESPACE, OPERATOR_SA)
        .expect("operator kubeconfig");
    let kc = kubeconfig.clone();
    let port = free_port();

    let result = tokio::task::spawn_blocking(move || {
        kubectl(
            &kc,
            &[
                "apply",
                "--server-side",
                "--validate=false",
                "-f",
                repo().join("crds/hardenedcsidrivers.csi.hardened.dev.yaml").to_str().expect("path"),
            ],
        );
        let child = Command::new(env!("CARGO_BIN_EXE_hardened-csi-operator"))
            // AWS stays on this machine: a closed local port answers every call with a refusal.
            .args([
                "run",
                "--kubeconfig",
                operator_kubeconfig.to_str().expect("path"),
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
                "--log-format",
                "json",
            ])
            .args(["--aws-endpoint-url", &format!("http://127.0.0.1:{}", free_port())])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("operator starts");
        let mut op = Operator(child);
        eventually("/readyz", || http_get(port, "/readyz").is_some_and(|(c, _)| c == 200));
        let (code, _) = http_get(port, "/livez").expect("livez");
        assert_eq!(code, 200);

        let example = repo().join("deploy/examples/minimal.yaml");
        kubectl(&kc, &["apply", "--server-side", "--validate=false", "-f", example.to_str().expect("path")]);
        let name = kubectl(&kc, &["get", "-f", example.to_str().expect("path"), "-o", "jsonpath={.metadata.name}"]);
        eventually("Ready=True", || {
            kubectl(&kc, &["get", "hcd", &name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])
                == "True"
        });
        // AWS is unreachable here (a closed port): the inventory says so, and the driver's own
        // reconciliation is not held up by it.
        eventually("AwsReachable=False", || {
            kubectl(
                &kc,
                &["get", "hcd", &name, "-o", "jsonpath={.status.conditions[?(@.type==\"AwsReachable\")].status}"],
            ) == "False"
        });
        let ready =
            kubectl(&kc, &["get", "hcd", &name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
        assert_eq!(ready, "True", "an AWS outage must not affect the driver's readiness");
        let table = kubectl(&kc, &["get", "hcd"]);
        assert!(table.contains("READY") && table.contains("True"), "{table}");
        let deploys = kubectl(&kc, &["get", "deploy", "-n", "kube-system", "-o", "name"]);
        assert!(deploys.contains("deployment.apps/ebs-csi-controller"), "{deploys}");
        let (code, metrics) = http_get(port, "/metrics").expect("metrics");
        assert_eq!(code, 200);
        assert!(metrics.contains("hardened_csi_operator_reconciles_total"), "{metrics}");

        kubectl(&kc, &["delete", "hcd", &name, "--wait=false"]);
        eventually("driver deleted", || kubectl(&kc, &["get", "hcd", "-o", "name"]).trim().is_empty());
        eventually("children deleted", || {
            !kubectl(&kc, &["get", "deploy", "-n", "kube-system", "-o", "name"]).contains("ebs-csi-controller")
        });

        // A graceful stop exits 0.
        let pid = op.0.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = op.0.try_wait().expect("wait") {
                assert!(status.success(), "operator exited with {status}");
                break;
            }
            assert!(Instant::now() < deadline, "operator did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
    let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SA}");
    let denied = server.denied_requests(&user);
    assert!(denied.is_empty(), "the kustomize base's RBAC refused the operator: {denied:#?}");
    assert!(!server.access_log(&user).is_empty(), "the operator ran as its ServiceAccount");
}

/// The binary's allocator options are in effect: jemalloc's own statistics, printed at exit when
/// asked for, list the options it runs with.
#[test]
fn the_binary_runs_jemalloc_with_its_options() {
    // Only the general section (the options), none of the per-arena tables.
    let out = Command::new(env!("CARGO_BIN_EXE_hardened-csi-operator"))
        .arg("crd")
        .env("_RJEM_MALLOC_CONF", "stats_print:true,stats_print_opts:mdablxeh")
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "crd failed: {}", String::from_utf8_lossy(&out.stderr));
    let stats = String::from_utf8_lossy(&out.stderr);
    for option in EXPECTED_ALLOCATOR_OPTIONS {
        assert!(stats.lines().any(|l| l.trim() == *option), "jemalloc does not run with {option:?}:\n{stats}");
    }
}

/// What .cargo/config.toml configures for this build, as jemalloc prints it: one arena on every
/// target, and on the static musl builds of the image no thread caches and no decay delay.
#[cfg(not(target_env = "musl"))]
const EXPECTED_ALLOCATOR_OPTIONS: &[&str] = &["opt.narenas: 1"];
#[cfg(target_env = "musl")]
const EXPECTED_ALLOCATOR_OPTIONS: &[&str] = &[
    "opt.narenas: 1",
    "opt.tcache: false",
    "opt.dirty_decay_ms: 0 (arenas.dirty_decay_ms: 0)",
    "opt.muzzy_decay_ms: 0 (arenas.muzzy_decay_ms: 0)",
];

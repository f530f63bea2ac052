//! A moto server (AWS EC2/EBS/STS emulator) for tests: started on a free port, reset on demand,
//! stopped on drop. Include it from any test binary with
//! `#[path = "../support/moto.rs"] mod moto;`.
//!
//! The binary is `$MOTO_SERVER`, else `.venv/bin/moto_server` of the repository (`make venv`).
//! A missing moto fails the test with a message saying how to install it: tests never skip.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use hardened_csi_operator::aws::sdk::{AwsSettings, CredentialSource, RetryPolicy};
use hardened_csi_operator::runtime::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub const REGION: &str = "us-east-1";
/// moto's account.
pub const ACCOUNT: &str = "123456789012";

pub struct Moto {
    child: Child,
    pub port: u16,
    pub url: String,
}

fn binary() -> PathBuf {
    match std::env::var_os("MOTO_SERVER") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"),
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// One HTTP/1.0 request to moto; returns the status code.
async fn http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok(code)
}

impl Moto {
    /// Starts moto on a free port and waits until it answers (at most 30 s).
    pub async fn start() -> Moto {
        let bin = binary();
        assert!(
            bin.exists(),
            "moto_server not found at {}: run `make venv` (or `python3 -m venv .venv && .venv/bin/pip install \
                'moto[server]==5.2.*'`), or set MOTO_SERVER to its path",
            bin.display()
        );
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(200) = http(port, "GET", "/moto-api/").await {
                    return Moto { child, port, url: format!("http://127.0.0.1:{port}") };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    // Lost the port to someone else between probing and binding: try another.
                    eprintln!("moto_server exited with {status} on port {port}; retrying on another port");
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "moto_server did not answer on port {port} within 30 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("moto_server could not be started on a free port (3 tries)");
    }

    /// Forgets every resource (POST /moto-api/reset).
    pub async fn reset(&self) {
        let code = http(self.port, "POST", "/moto-api/reset").await.expect("moto reset request");
        assert_eq!(code, 200, "moto reset answered {code}");
    }

    /// SDK settings pointing every service at moto, with static test keys and fast retries.
    pub fn settings(&self, metrics: Arc<Metrics>) -> AwsSettings {
        AwsSettings {
            endpoint_url: Some(self.url.clone()),
            credentials: static_credentials(),
            retry: fast_retries(),
            ..AwsSettings::new(REGION, metrics.aws.clone())
        }
    }

    async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(&self.url)
            .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "test"))
            .load()
            .await
    }

    /// An EC2 client on moto, for seeding.
    pub async fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config().await)
    }

    /// A KMS client on moto, for seeding keys and aliases.
    pub async fn kms(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.sdk_config().await)
    }

    /// An EBS direct API client on moto, for seeding snapshots it can list blocks of.
    pub async fn ebs(&self) -> aws_sdk_ebs::Client {
        aws_sdk_ebs::Client::new(&self.sdk_config().await)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub fn static_credentials() -> CredentialSource {
    CredentialSource::Static { access_key_id: "testing".into(), secret_access_key: "testing".into() }
}

/// The production policy's attempts with millisecond delays, so tests of retries stay quick.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy { base_delay: Duration::from_millis(2), max_delay: Duration::from_millis(10), ..RetryPolicy::default() }
}

//! Configuration of `hardened-csi-operator run`: command-line flags, each with an `HCO_*`
//! environment fallback, their validation, and the Kubernetes client they select.
//!
//! Values the flags leave open (the lease namespace, this replica's identity) are resolved here
//! from the pod's downward-API environment or the service-account mount, so the rest of the
//! operator receives complete, validated settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Where Kubernetes mounts the pod's namespace next to the service-account token.
pub const SERVICE_ACCOUNT_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Flags of `hardened-csi-operator run`. Every flag can also be set by the environment variable
/// named in its help; the flag wins when both are given.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct RunArgs {
    /// Kubeconfig file to use; without it the in-cluster service account or $KUBECONFIG /
    /// ~/.kube/config is used.
    #[arg(long, env = "HCO_KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Address of the HTTP server for /livez, /readyz and /metrics.
    #[arg(long, env = "HCO_METRICS_ADDR", value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Elect a leader through a coordination.k8s.io Lease so that several replicas can run and only
    /// one reconciles and polls AWS (true/false, yes/no, 1/0, on/off in the environment).
    #[arg(
        long,
        env = "HCO_LEADER_ELECTION",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
    )]
    pub leader_election: bool,

    /// Name of the Lease used for leader election.
    #[arg(long, env = "HCO_LEASE_NAME", value_name = "NAME", default_value = "hardened-csi-operator")]
    pub lease_name: String,

    /// Namespace of the Lease; defaults to the pod's namespace ($POD_NAMESPACE or the
    /// service-account mount).
    #[arg(long, env = "HCO_LEASE_NAMESPACE", value_name = "NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long a lease is valid without renewal; a replica takes over a lease its holder has not
    /// renewed for this long (whole seconds, e.g. 15s).
    #[arg(long, env = "HCO_LEASE_DURATION", value_name = "DURATION", default_value = "15s",
        value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// How long the leader keeps leading while renewals fail; must be shorter than the lease
    /// duration so it stops before anyone else may start.
    #[arg(long, env = "HCO_RENEW_DEADLINE", value_name = "DURATION", default_value = "10s",
        value_parser = parse_duration)]
    pub renew_deadline: Duration,

    /// Interval between attempts to acquire or renew the lease.
    #[arg(long, env = "HCO_RETRY_PERIOD", value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub retry_period: Duration,

    /// Log line format.
    #[arg(long, env = "HCO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in RUST_LOG syntax, e.g. `info` or `info,hardened_csi_operator=debug`.
    #[arg(long, env = "HCO_LOG_LEVEL", value_name = "FILTER", default_value = "info", value_parser = parse_log_filter)]
    pub log_level: String,

    /// Endpoint URL for every AWS API call (a VPC endpoint, or moto in tests).
    #[arg(long, env = "HCO_AWS_ENDPOINT_URL", value_name = "URL", value_parser = parse_endpoint_url)]
    pub aws_endpoint_url: Option<String>,

    /// AWS region; defaults to the SDK's resolution (AWS_REGION, profile, instance metadata).
    #[arg(long, env = "HCO_AWS_REGION", value_name = "REGION", value_parser = parse_region)]
    pub aws_region: Option<String>,

    /// Time allowed after SIGTERM to finish in-flight work and release the lease; keep it below
    /// the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "HCO_SHUTDOWN_GRACE_PERIOD", value_name = "DURATION", default_value = "25s",
        value_parser = parse_duration)]
    pub shutdown_grace_period: Duration,

    /// How often the Kubernetes version is asked again while running (also at once after a watch
    /// error), so a control-plane upgrade or downgrade re-renders the driver without a restart.
    #[arg(long, env = "HCO_DISCOVERY_INTERVAL", value_name = "DURATION", default_value = "5m",
        value_parser = parse_duration)]
    pub discovery_interval: Duration,

    /// Identity of this replica in the Lease; defaults to $POD_NAME, then the host name.
    #[arg(long, env = "HCO_IDENTITY", value_name = "NAME")]
    pub identity: Option<String>,

    /// The namespace the driver runs in, fixed at install time: the operator's RBAC grants its
    /// namespaced writes there only, and a HardenedCsiDriver with another spec.namespace is refused.
    #[arg(long, env = "HCO_DRIVER_NAMESPACE", value_name = "NAMESPACE", default_value = "kube-system",
        value_parser = parse_namespace)]
    pub driver_namespace: String,

    /// A registry the operator may deploy the driver from (spec.images.registry, or
    /// spec.images.mirror when set): a host, or a host and path prefix. Repeat the flag, or
    /// separate with commas in HCO_ALLOWED_REGISTRY. The default allows Docker Hardened Images only.
    #[arg(long = "allowed-registry", env = "HCO_ALLOWED_REGISTRY", value_name = "REGISTRY",
        default_value = "dhi.io", value_delimiter = ',', value_parser = parse_registry)]
    pub allowed_registries: Vec<String>,
}

/// Format of log lines.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable lines.
    Text,
}

/// A configuration value that is missing or wrong; each names the flag and what is valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--lease-namespace is not set and the pod namespace is unknown: set --lease-namespace / HCO_LEASE_NAMESPACE, \
         or POD_NAMESPACE through the downward API ({SERVICE_ACCOUNT_NAMESPACE_FILE} is not readable: {reason})"
    )]
    LeaseNamespaceUnknown { reason: String },
    #[error("{flag} must not be empty")]
    Empty { flag: &'static str },
    #[error("--identity is not set and neither POD_NAME nor the host name is available: {reason}")]
    IdentityUnknown { reason: String },
    #[error("{flag} is {value:?}: {rule}")]
    Duration { flag: &'static str, value: Duration, rule: String },
    #[error("--kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration found (no in-cluster service account, $KUBECONFIG or ~/.kube/config): {0}")]
    InferConfig(#[source] kube::config::InferConfigError),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// Leader-election settings, complete and checked against each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Checks the timing rules leader election relies on: the leader must give up (renew
    /// deadline) before any other replica may take over (lease duration), and must get more than
    /// one renewal attempt in before giving up.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::Empty { flag: "--lease-name" });
        }
        if self.namespace.is_empty() {
            return Err(ConfigError::Empty { flag: "--lease-namespace" });
        }
        if self.identity.is_empty() {
            return Err(ConfigError::Empty { flag: "--identity" });
        }
        if self.lease_duration < Duration::from_secs(1) || self.lease_duration.subsec_nanos() != 0 {
            return Err(ConfigError::Duration {
                flag: "--lease-duration",
                value: self.lease_duration,
                rule: "must be a whole number of seconds, at least 1s (the Lease stores seconds)".into(),
            });
        }
        if self.lease_duration.as_secs() > i32::MAX as u64 {
            return Err(ConfigError::Duration {
                flag: "--lease-duration",
                value: self.lease_duration,
                rule: format!("must be at most {}s", i32::MAX),
            });
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(ConfigError::Duration {
                flag: "--renew-deadline",
                value: self.renew_deadline,
                rule: format!(
                    "must be shorter than --lease-duration ({:?}) so the leader stops before another replica may start",
                    self.lease_duration
                ),
            });
        }
        if self.retry_period.is_zero() {
            return Err(ConfigError::Duration {
                flag: "--retry-period",
                value: self.retry_period,
                rule: "must be greater than zero".into(),
            });
        }
        if self.retry_period >= self.renew_deadline {
            return Err(ConfigError::Duration {
                flag: "--retry-period",
                value: self.retry_period,
                rule: format!(
                    "must be shorter than --renew-deadline ({:?}) so a failed renewal is retried before leadership is \
                        given up",
                    self.renew_deadline
                ),
            });
        }
        Ok(())
    }
}

impl RunArgs {
    /// Leader-election settings with the namespace and identity resolved from the pod
    /// environment; `None` when leader election is off.
    pub fn lease_settings(&self) -> Result<Option<LeaseSettings>, ConfigError> {
        if !self.leader_election {
            return Ok(None);
        }
        let env = |name: &str| std::env::var(name).ok();
        let settings = LeaseSettings {
            name: self.lease_name.clone(),
            namespace: resolve_lease_namespace(
                self.lease_namespace.as_deref(),
                env,
                Path::new(SERVICE_ACCOUNT_NAMESPACE_FILE),
            )?,
            identity: resolve_identity(self.identity.as_deref(), env, || {
                hostname::get().map(|h| h.to_string_lossy().into_owned())
            })?,
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
        };
        settings.validate()?;
        Ok(Some(settings))
    }

    /// Checks every value that flags alone cannot check: the lease settings, the grace period and
    /// the discovery interval.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.shutdown_grace_period.is_zero() {
            return Err(ConfigError::Duration {
                flag: "--shutdown-grace-period",
                value: self.shutdown_grace_period,
                rule: "must be greater than zero".into(),
            });
        }
        if self.discovery_interval < Duration::from_secs(1) {
            return Err(ConfigError::Duration {
                flag: "--discovery-interval",
                value: self.discovery_interval,
                rule: "must be at least 1s (each re-discovery is a request to the API server)".into(),
            });
        }
        self.lease_settings().map(|_| ())
    }
}

/// The lease namespace: the flag, else `POD_NAMESPACE`, else the service-account mount.
pub fn resolve_lease_namespace(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    service_account_namespace_file: &Path,
) -> Result<String, ConfigError> {
    if let Some(namespace) = flag {
        return non_empty(namespace, "--lease-namespace");
    }
    if let Some(namespace) = env("POD_NAMESPACE").filter(|n| !n.trim().is_empty()) {
        return Ok(namespace.trim().to_string());
    }
    match std::fs::read_to_string(service_account_namespace_file) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_string()),
        Ok(_) => Err(ConfigError::LeaseNamespaceUnknown { reason: "the file is empty".into() }),
        Err(err) => Err(ConfigError::LeaseNamespaceUnknown { reason: err.to_string() }),
    }
}

/// This replica's identity: the flag, else `POD_NAME`, else the host name (which is the pod name
/// inside a pod).
pub fn resolve_identity(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    hostname: impl FnOnce() -> std::io::Result<String>,
) -> Result<String, ConfigError> {
    if let Some(identity) = flag {
        return non_empty(identity, "--identity");
    }
    if let Some(name) = env("POD_NAME").filter(|n| !n.trim().is_empty()) {
        return Ok(name.trim().to_string());
    }
    match hostname() {
        Ok(name) if !name.trim().is_empty() => Ok(name.trim().to_string()),
        Ok(_) => Err(ConfigError::IdentityUnknown { reason: "the host name is empty".into() }),
        Err(err) => Err(ConfigError::IdentityUnknown { reason: err.to_string() }),
    }
}

fn non_empty(value: &str, flag: &'static str) -> Result<String, ConfigError> {
    let value = value.trim();
    if value.is_empty() { Err(ConfigError::Empty { flag }) } else { Ok(value.to_string()) }
}

/// The Kubernetes client: from `--kubeconfig` when given (its current context), otherwise
/// inferred (in-cluster service account, then $KUBECONFIG / ~/.kube/config).
pub async fn kube_client(args: &RunArgs) -> Result<kube::Client, ConfigError> {
    kube_client_counted(args, None).await
}

/// The Kubernetes client, counting every request in `requests` when given.
pub async fn kube_client_counted(
    args: &RunArgs,
    requests: Option<super::metrics::KubeRequests>,
) -> Result<kube::Client, ConfigError> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|source| ConfigError::Kubeconfig { path: path.clone(), source })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|source| ConfigError::Kubeconfig { path: path.clone(), source })?
        }
        None => kube::Config::infer().await.map_err(ConfigError::InferConfig)?,
    };
    match requests {
        None => kube::Client::try_from(config).map_err(ConfigError::Client),
        Some(r) => {
            let builder = kube::client::ClientBuilder::try_from(config).map_err(ConfigError::Client)?;
            Ok(builder.with_layer(&super::kube_metrics::CountRequestsLayer(r)).build())
        }
    }
}

/// Parses a duration such as `500ms`, `15s`, `2m`, `1h30m` or ISO 8601 `PT15S`. A bare number is
/// refused: its unit would be a guess. clap prefixes the error with the flag's name.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let hint = "expected a number with a unit, such as 500ms, 15s, 2m or 1h30m";
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("empty duration: {hint}"));
    }
    if trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("{trimmed:?} has no unit: {hint}"));
    }
    let signed: jiff::SignedDuration = trimmed.parse().map_err(|err| format!("{trimmed:?}: {hint} ({err})"))?;
    Duration::try_from(signed).map_err(|_| format!("{trimmed:?} is negative: {hint}"))
}

/// A namespace name: a DNS-1123 label (lowercase alphanumerics and '-', at most 63).
pub fn parse_namespace(text: &str) -> Result<String, String> {
    let t = text.trim();
    let ok = !t.is_empty()
        && t.len() <= 63
        && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !t.starts_with('-')
        && !t.ends_with('-');
    if ok {
        Ok(t.to_string())
    } else {
        Err(format!("{t:?} is not a namespace name: lowercase letters, digits and '-', at most 63, e.g. kube-system"))
    }
}

/// A registry: a host (with an optional port) and an optional path, no scheme, no tag.
pub fn parse_registry(text: &str) -> Result<String, String> {
    let t = text.trim().trim_end_matches('/');
    let hint = "expected a registry host with an optional path, such as dhi.io or registry.example.com/dhi";
    if t.is_empty() {
        return Err(format!("empty registry: {hint}"));
    }
    if t.contains("://") || t.contains(char::is_whitespace) || t.contains('@') {
        return Err(format!("{t:?}: {hint} (no scheme, digest or spaces)"));
    }
    let host = t.split('/').next().unwrap_or_default();
    let valid_host = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
        && !host.starts_with(['.', '-', ':']);
    if !valid_host || t.split('/').any(str::is_empty) {
        return Err(format!("{t:?}: {hint}"));
    }
    Ok(t.to_string())
}

fn parse_log_filter(text: &str) -> Result<String, String> {
    EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_string())
        .map_err(|err| format!("{text:?} is not a RUST_LOG-style filter such as `info` or `info,kube=debug`: {err}"))
}

fn parse_endpoint_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or_else(|| format!("{text:?} must start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        return Err(format!(
            "{text:?} has no host: expected e.g. https://ec2.eu-west-1.amazonaws.com or http://127.0.0.1:5000"
        ));
    }
    Ok(text.to_string())
}

fn parse_region(text: &str) -> Result<String, String> {
    let text = text.trim();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        Ok(text.to_string())
    } else {
        Err(format!("{text:?} is not an AWS region name such as eu-west-1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    /// Parses with flags only; used by tests that run in the normal test process, where HCO_*
    /// variables are not set (the environment test runs in a child process with a cleared env).
    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied())).map(|c| c.run)
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let args = parse(&[]).expect("defaults parse");
        assert_eq!(args.metrics_addr, "0.0.0.0:8080".parse().expect("addr"));
        assert!(!args.leader_election);
        assert_eq!(args.lease_name, "hardened-csi-operator");
        assert_eq!(args.lease_duration, Duration::from_secs(15));
        assert_eq!(args.renew_deadline, Duration::from_secs(10));
        assert_eq!(args.retry_period, Duration::from_secs(2));
        assert_eq!(args.shutdown_grace_period, Duration::from_secs(25));
        assert_eq!(args.log_format, LogFormat::Text);
        assert_eq!(args.log_level, "info");
        assert_eq!(args.kubeconfig, None);
        assert_eq!(args.driver_namespace, "kube-system");
        assert_eq!(args.allowed_registries, ["dhi.io"]);
        assert!(args.validate().is_ok());
    }

    #[test]
    fn driver_namespace_and_registries_are_checked() {
        let args = parse(&[
            "--driver-namespace",
            "storage",
            "--allowed-registry",
            "dhi.io",
            "--allowed-registry",
            "registry.example.com:5000/dhi/",
        ])
        .expect("parses");
        assert_eq!(args.driver_namespace, "storage");
        assert_eq!(args.allowed_registries, ["dhi.io", "registry.example.com:5000/dhi"]);
        for bad in ["Kube-System", "x-", "a.b"] {
            let e = parse(&["--driver-namespace", bad]).expect_err(bad).to_string();
            assert!(e.contains("--driver-namespace") && e.contains("not a namespace name"), "{e}");
        }
        for bad in ["https://dhi.io", "dhi.io//x", "dhi.io@sha256:x", " "] {
            let e = parse(&["--allowed-registry", bad]).expect_err(bad).to_string();
            assert!(e.contains("--allowed-registry") && e.contains("registry"), "{e}");
        }
    }

    #[test]
    fn every_flag_has_an_hco_env_fallback() {
        let command = Cli::command();
        let mut checked = 0;
        for arg in command.get_arguments().filter(|a| a.get_long().is_some()) {
            let long = arg.get_long().expect("filtered on long");
            if long == "help" {
                continue;
            }
            let expected = format!("HCO_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(expected.as_str()),
                "--{long} has no env fallback {expected}"
            );
            checked += 1;
        }
        assert_eq!(checked, 17, "a flag was added or removed: update this test and the docs");
    }

    /// Runs the real environment fallback in a child process (the test binary re-executed for this
    /// one test) so no variable leaks into tests running in parallel.
    #[test]
    fn environment_fills_flags_and_flags_win() {
        if std::env::var_os("HCO_CONFIG_TEST_CHILD").is_some() {
            let from_env = parse(&[]).expect("env values parse");
            assert_eq!(from_env.metrics_addr, "127.0.0.1:9090".parse().expect("addr"));
            assert!(from_env.leader_election, "HCO_LEADER_ELECTION=yes means true");
            assert_eq!(from_env.lease_duration, Duration::from_secs(30));
            assert_eq!(from_env.renew_deadline, Duration::from_millis(20_500));
            assert_eq!(from_env.log_format, LogFormat::Json);
            assert_eq!(from_env.lease_namespace.as_deref(), Some("ops"));
            assert_eq!(from_env.aws_endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
            assert_eq!(from_env.identity.as_deref(), Some("replica-a"));
            let flags_win = parse(&["--lease-duration", "40s", "--log-format", "text"]).expect("flags parse");
            assert_eq!(flags_win.lease_duration, Duration::from_secs(40));
            assert_eq!(flags_win.log_format, LogFormat::Text);
            let settings = from_env.lease_settings().expect("settings").expect("election on");
            assert_eq!(settings.namespace, "ops");
            assert_eq!(settings.identity, "replica-a");
            return;
        }
        let exe = std::env::current_exe().expect("test binary path");
        // The test's name inside the binary: its module path without the crate name.
        let module = module_path!().split_once("::").map_or(module_path!(), |(_, rest)| rest);
        let name = format!("{module}::environment_fills_flags_and_flags_win");
        let output = std::process::Command::new(exe)
            .args([name.as_str(), "--exact", "--test-threads=1"])
            .env_clear()
            .env("HCO_CONFIG_TEST_CHILD", "1")
            .env("HCO_METRICS_ADDR", "127.0.0.1:9090")
            .env("HCO_LEADER_ELECTION", "yes")
            .env("HCO_LEASE_DURATION", "30s")
            .env("HCO_RENEW_DEADLINE", "20s500ms")
            .env("HCO_LOG_FORMAT", "json")
            .env("HCO_LEASE_NAMESPACE", "ops")
            .env("HCO_AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
            .env("HCO_IDENTITY", "replica-a")
            .output()
            .expect("run child test");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn bad_durations_name_the_flag() {
        for (flag, value) in [
            ("--lease-duration", "15"),
            ("--renew-deadline", "ten seconds"),
            ("--retry-period", "-2s"),
            ("--shutdown-grace-period", ""),
        ] {
            let err = parse(&[&format!("{flag}={value}")]).expect_err("must be refused").to_string();
            assert!(err.contains(flag), "{flag}={value:?}: {err}");
            assert!(err.contains("such as 500ms, 15s"), "{flag}={value:?}: {err}");
        }
    }

    #[test]
    fn durations_accept_units_and_combinations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("PT15S"), Ok(Duration::from_secs(15)));
        assert!(parse_duration("1.5").is_err());
    }

    #[test]
    fn other_bad_values_name_the_flag() {
        for (flag, value) in [
            ("--metrics-addr", "localhost"),
            ("--log-format", "xml"),
            ("--log-level", "info,=[="),
            ("--aws-endpoint-url", "ec2.amazonaws.com"),
            ("--aws-region", "EU West"),
            ("--leader-election", "maybe"),
        ] {
            let err = parse(&[&format!("{flag}={value}")]).expect_err("must be refused").to_string();
            assert!(err.contains(flag), "{flag}={value:?}: {err}");
        }
    }

    fn lease(lease: u64, renew: u64, retry_ms: u64) -> LeaseSettings {
        LeaseSettings {
            name: "l".into(),
            namespace: "ns".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(renew),
            retry_period: Duration::from_millis(retry_ms),
        }
    }

    #[test]
    fn lease_timing_rules_name_the_flag() {
        assert!(lease(15, 10, 2000).validate().is_ok());
        let err = lease(10, 10, 2000).validate().expect_err("deadline == duration").to_string();
        assert!(err.contains("--renew-deadline") && err.contains("shorter than --lease-duration"), "{err}");
        let err = lease(15, 10, 10_000).validate().expect_err("retry == deadline").to_string();
        assert!(err.contains("--retry-period"), "{err}");
        let err = lease(15, 10, 0).validate().expect_err("zero retry").to_string();
        assert!(err.contains("--retry-period"), "{err}");
        let mut fractional = lease(15, 10, 2000);
        fractional.lease_duration = Duration::from_millis(15_500);
        let err = fractional.validate().expect_err("fractional").to_string();
        assert!(err.contains("--lease-duration") && err.contains("whole number of seconds"), "{err}");
    }

    #[test]
    fn lease_namespace_resolution_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("namespace");
        std::fs::write(&file, "from-file\n").expect("write");
        let no_env = |_: &str| None;
        let pod_env = |name: &str| (name == "POD_NAMESPACE").then(|| "from-env".to_string());
        assert_eq!(resolve_lease_namespace(Some("flag"), pod_env, &file).expect("flag"), "flag");
        assert_eq!(resolve_lease_namespace(None, pod_env, &file).expect("env"), "from-env");
        assert_eq!(resolve_lease_namespace(None, no_env, &file).expect("file"), "from-file");
        let missing = dir.path().join("absent");
        let err = resolve_lease_namespace(None, no_env, &missing).expect_err("nothing").to_string();
        assert!(err.contains("--lease-namespace") && err.contains("POD_NAMESPACE"), "{err}");
        let err = resolve_lease_namespace(Some(" "), no_env, &file).expect_err("empty flag").to_string();
        assert!(err.contains("--lease-namespace must not be empty"), "{err}");
    }

    #[test]
    fn identity_resolution_order() {
        let pod_env = |name: &str| (name == "POD_NAME").then(|| "pod-7".to_string());
        let host = || Ok("host-1".to_string());
        assert_eq!(resolve_identity(Some("flag"), pod_env, host).expect("flag"), "flag");
        assert_eq!(resolve_identity(None, pod_env, host).expect("env"), "pod-7");
        assert_eq!(resolve_identity(None, |_: &str| None, host).expect("host"), "host-1");
        let err = resolve_identity(None, |_: &str| None, || Err(std::io::Error::other("no uts")))
            .expect_err("nothing")
            .to_string();
        assert!(err.contains("--identity") && err.contains("POD_NAME"), "{err}");
    }

    #[tokio::test]
    async fn kubeconfig_flag_is_honoured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: local\nclusters:\n- name: local\n  cluster:\n    server: \
                http://127.0.0.1:6443\n\
             contexts:\n- name: local\n  context:\n    cluster: local\n    user: local\n    namespace: ops\n\
             users:\n- name: local\n  user: {}\n",
        )
        .expect("write kubeconfig");
        let mut args = parse(&[]).expect("defaults");
        args.kubeconfig = Some(path.clone());
        let client = kube_client(&args).await.expect("client from kubeconfig");
        assert_eq!(client.default_namespace(), "ops");

        args.kubeconfig = Some(dir.path().join("missing"));
        let err = kube_client(&args).await.err().expect("missing file is an error").to_string();
        assert!(err.starts_with("--kubeconfig "), "{err}");
    }
}

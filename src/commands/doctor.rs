//! `hardened-csi-operator doctor`: the AWS checks of the inventory run once from a workstation,
//! before anything is installed: identity, IAM preflight, encryption, zones, volumes and
//! snapshots of the cluster, and with a kubeconfig the orphaned volumes. Prints a readable
//! report, or JSON in the shape of `status.aws`.
//!
//! Exit codes: 0 every permission granted, 1 permissions missing or a KMS key unusable, 3 AWS could not be asked
//! (credentials, network, throttling); bad arguments are an `Err` (exit 2, like clap's own).

use std::io::Write;
use std::path::PathBuf;

use aws_smithy_runtime_api::client::http::SharedHttpClient;
use clap::{Args, ValueEnum};
use thiserror::Error;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;

use crate::aws::api::{AwsApi, AwsError};
use crate::aws::cluster;
use crate::aws::inventory::{self, ClusterView, Memory, RefreshParams};
use crate::aws::metrics::AwsMetrics;
use crate::aws::preflight::KmsUse;
use crate::aws::sdk::{AwsSettings, CredentialSource, RetryPolicy, SdkAws};

/// The annotation IRSA reads on a service account.
pub const IRSA_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
use crate::crd::AwsStatus;

pub const EXIT_OK: i32 = 0;
pub const EXIT_MISSING_PERMISSIONS: i32 = 1;
/// 2 is left to usage errors (clap's and `DoctorError`).
pub const EXIT_AWS_FAILED: i32 = 3;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// Check AWS for the EBS CSI driver: IAM permissions, encryption, zones, volumes, snapshots and
/// (with a kubeconfig) orphaned volumes.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct DoctorArgs {
    /// AWS region; without it the SDK's resolution (AWS_REGION, profile).
    #[arg(long, env = "HCO_AWS_REGION", value_name = "REGION")]
    pub region: Option<String>,
    /// Cluster id the driver tags volumes with (`spec.aws.clusterId`); without it the inventory
    /// is account-wide.
    #[arg(long, env = "HCO_CLUSTER_ID", value_name = "ID")]
    pub cluster_id: Option<String>,
    /// IAM role to check (the driver's role). Alone: assumed with STS AssumeRole using your
    /// credentials (its trust policy must allow you). With --service-account: the IRSA role, assumed
    /// as the driver does. Without either, your own credentials are checked.
    #[arg(long, env = "HCO_ROLE_ARN", value_name = "ARN")]
    pub role_arn: Option<String>,
    /// Check as the driver's service account (`kube-system/ebs-csi-controller-sa`), exactly as the
    /// operator does: a TokenRequest through --kubeconfig, then STS AssumeRoleWithWebIdentity (IRSA:
    /// --role-arn, else the account's eks.amazonaws.com/role-arn annotation) or, without a role, EKS
    /// Pod Identity's AssumeRoleForPodIdentity in the EKS cluster named by --cluster-id.
    #[arg(long, env = "HCO_SERVICE_ACCOUNT", value_name = "NAMESPACE/NAME")]
    pub service_account: Option<String>,
    /// Endpoint URL of every AWS call (a VPC endpoint, or moto).
    #[arg(long, env = "HCO_AWS_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Endpoint URL of STS only (`spec.aws.stsEndpoint`: an STS VPC endpoint); wins over
    /// --endpoint-url for every STS call (AssumeRole of --role-arn, AssumeRoleWithWebIdentity,
    /// GetCallerIdentity).
    #[arg(long, env = "HCO_STS_ENDPOINT", value_name = "URL")]
    pub sts_endpoint: Option<String>,
    /// Endpoint URL of KMS only (`spec.aws.kmsEndpoint`: a KMS VPC endpoint); wins over
    /// --endpoint-url for the --kms-key-id probes.
    #[arg(long, env = "HCO_KMS_ENDPOINT", value_name = "URL")]
    pub kms_endpoint: Option<String>,
    /// Kubeconfig of the cluster: its PersistentVolumes are compared with the volumes to find orphans.
    #[arg(long, env = "HCO_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Use AWS FIPS endpoints.
    #[arg(long, env = "HCO_FIPS")]
    pub fips: bool,
    /// Age after which an unreferenced available volume counts as orphaned.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub orphan_grace_period: String,
    /// Time after which an attaching/detaching attachment counts as stuck.
    #[arg(long, value_name = "DURATION", default_value = "15m")]
    pub stuck_threshold: String,
    /// Also read the newest completed snapshot through the EBS direct API.
    #[arg(long)]
    pub verify_snapshots: bool,
    /// A KMS key (ID, alias, key or alias ARN) a StorageClass encrypts with, repeatable: probed
    /// as the checked identity (DescribeKey and DryRun GenerateDataKey*, CreateGrant, Encrypt,
    /// Decrypt, ReEncrypt*). `default`: the account's default EBS key (GetEbsDefaultKmsKeyId).
    #[arg(long = "kms-key-id", value_name = "KEY")]
    pub kms_key_ids: Vec<String>,
    /// Report format.
    #[arg(long, short = 'o', env = "HCO_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

impl Default for DoctorArgs {
    fn default() -> Self {
        Self {
            region: None,
            cluster_id: None,
            role_arn: None,
            service_account: None,
            endpoint_url: None,
            sts_endpoint: None,
            kms_endpoint: None,
            kubeconfig: None,
            fips: false,
            orphan_grace_period: "1h".into(),
            stuck_threshold: "15m".into(),
            verify_snapshots: false,
            kms_key_ids: Vec::new(),
            output: OutputFormat::Text,
        }
    }
}

#[derive(Debug, Error)]
pub enum DoctorError {
    #[error("{flag} {value:?}: {rule}")]
    InvalidArgument { flag: &'static str, value: String, rule: &'static str },
    #[error("--kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("listing PersistentVolumes: {0}")]
    ListPersistentVolumes(#[source] kube::Error),
    #[error("--service-account {name}: {message}")]
    ServiceAccount { name: String, message: String },
    #[error("AWS client: {0}")]
    Aws(#[from] AwsError),
    #[error("writing the report: {0}")]
    Output(#[from] std::io::Error),
}

impl DoctorArgs {
    fn params(&self) -> Result<RefreshParams, DoctorError> {
        let duration = |flag: &'static str, v: &str| {
            crate::crd::duration::parse(v).ok_or(DoctorError::InvalidArgument {
                flag,
                value: v.to_string(),
                rule: "a duration like 30s, 15m or 1h30m",
            })
        };
        if let Some(arn) = &self.role_arn
            && !(arn.starts_with("arn:aws") && arn.contains(":iam::") && arn.contains(":role/"))
        {
            return Err(DoctorError::InvalidArgument {
                flag: "--role-arn",
                value: arn.clone(),
                rule: "an IAM role ARN like arn:aws:iam::123456789012:role/name",
            });
        }
        if let Some(sa) = &self.service_account {
            let valid = sa.split_once('/').is_some_and(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'));
            if !valid {
                return Err(DoctorError::InvalidArgument {
                    flag: "--service-account",
                    value: sa.clone(),
                    rule: "NAMESPACE/NAME, for example kube-system/ebs-csi-controller-sa",
                });
            }
            if self.kubeconfig.is_none() {
                return Err(DoctorError::InvalidArgument {
                    flag: "--service-account",
                    value: sa.clone(),
                    rule: "needs --kubeconfig: the token is requested from the cluster",
                });
            }
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(DoctorError::InvalidArgument {
                flag: "--endpoint-url",
                value: url.clone(),
                rule: "a URL starting with http:// or https://",
            });
        }
        let mut kms = KmsUse::default();
        for key in &self.kms_key_ids {
            match key.trim() {
                "" => {
                    return Err(DoctorError::InvalidArgument {
                        flag: "--kms-key-id",
                        value: key.clone(),
                        rule: "a KMS key ID, alias (alias/name), key or alias ARN, or `default`",
                    });
                }
                "default" => kms.default_key_classes = vec!["--kms-key-id default".to_string()],
                k => kms.keys.entry(k.to_string()).or_default().push(format!("--kms-key-id {k}")),
            }
        }
        Ok(RefreshParams {
            cluster_id: self.cluster_id.clone().filter(|c| !c.trim().is_empty()),
            orphan_grace: duration("--orphan-grace-period", &self.orphan_grace_period)?,
            stuck_threshold: duration("--stuck-threshold", &self.stuck_threshold)?,
            verify_snapshots: self.verify_snapshots,
            kms,
            // The doctor only asks: it never tags (the retag is the operator's, on its interval).
            retag: None,
        })
    }
}

/// `hardened-csi-operator doctor`: exit 0/1/3 as documented above, 2 for bad arguments.
pub fn main(args: DoctorArgs) -> std::process::ExitCode {
    match super::block_on(run_doctor(args)) {
        Ok(Ok(code)) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
        Err(code) => code,
    }
}

/// The checks with the caller's default AWS credentials, report on stdout. Returns the exit code.
/// Returns the exit code.
pub async fn run_doctor(args: DoctorArgs) -> Result<i32, DoctorError> {
    let mut report = Vec::new();
    let code = run_doctor_with(args, CredentialSource::Default, None, &mut report).await?;
    std::io::stdout().write_all(&report)?;
    Ok(code)
}

/// `run_doctor` with given base credentials and HTTP client (tests, moto) and output.
pub async fn run_doctor_with(
    args: DoctorArgs,
    base: CredentialSource,
    http_client: Option<SharedHttpClient>,
    out: &mut (dyn Write + Send),
) -> Result<i32, DoctorError> {
    let params = args.params()?;
    let (kube, cluster) = match &args.kubeconfig {
        Some(path) => {
            let client = kube_client(path).await?;
            let view = cluster::list_view(&client).await.map_err(DoctorError::ListPersistentVolumes)?;
            (Some(client), view)
        }
        None => (None, ClusterView::default()),
    };
    let credentials = match (&args.service_account, kube) {
        (Some(sa), Some(kube)) => service_account_credentials(&args, sa, kube, base).await?,
        _ => match &args.role_arn {
            Some(role_arn) => CredentialSource::AssumeRole { role_arn: role_arn.clone(), base: Box::new(base) },
            None => base,
        },
    };
    let settings = AwsSettings {
        region: args.region.clone(),
        endpoint_url: args.endpoint_url.clone(),
        ec2_endpoint: None,
        sts_endpoint: args.sts_endpoint.clone(),
        kms_endpoint: args.kms_endpoint.clone(),
        fips: args.fips,
        proxy: None,
        ca_bundle: None,
        credentials,
        http_client,
        retry: RetryPolicy::default(),
        metrics: AwsMetrics::default(),
        principal_label: Some("your credentials".to_string()),
        not_verifiable: None,
    };
    let api = SdkAws::new(settings).await?;
    let status = check(&api, &params, &cluster).await;
    match args.output {
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(&status).map_err(|e| std::io::Error::other(e.to_string()))?;
            writeln!(out, "{json}")?;
        }
        OutputFormat::Text => out.write_all(text_report(&status, &params, jiff::Timestamp::now()).as_bytes())?,
    }
    Ok(exit_code(&status))
}

/// One refresh, as the poller makes it (one look: a detach in progress cannot be measured, so
/// only attaching and VolumeAttachment errors can be stuck here).
pub async fn check(api: &dyn AwsApi, params: &RefreshParams, cluster: &ClusterView) -> AwsStatus {
    inventory::refresh_with(api, params, cluster, None, &mut Memory::default(), jiff::Timestamp::now()).await
}

/// The driver's identity as the operator takes it, for `--service-account NAMESPACE/NAME`.
async fn service_account_credentials(
    args: &DoctorArgs,
    sa: &str,
    kube: kube::Client,
    base: CredentialSource,
) -> Result<CredentialSource, DoctorError> {
    let (namespace, name) = sa.split_once('/').unwrap_or(("", sa));
    let fail = |message: String| DoctorError::ServiceAccount { name: sa.to_string(), message };
    let api: Api<ServiceAccount> = Api::namespaced(kube.clone(), namespace);
    let account = match api.get_opt(name).await {
        Ok(Some(a)) => a,
        Ok(None) => return Err(fail("not found in the cluster".to_string())),
        Err(e) => return Err(fail(format!("reading it: {e}"))),
    };
    let annotated = account.metadata.annotations.as_ref().and_then(|a| a.get(IRSA_ANNOTATION)).cloned();
    let (namespace, service_account) = (namespace.to_string(), name.to_string());
    if let Some(role_arn) = args.role_arn.clone().or(annotated) {
        return Ok(CredentialSource::WebIdentity { kube, namespace, service_account, role_arn });
    }
    match args.cluster_id.clone().filter(|c| !c.trim().is_empty()) {
        Some(cluster_name) => {
            Ok(CredentialSource::PodIdentity { kube, namespace, service_account, cluster_name, base: Box::new(base) })
        }
        None => Err(fail(format!(
            "no {IRSA_ANNOTATION} annotation: pass --role-arn (IRSA) or --cluster-id with the EKS cluster name (EKS \
                Pod Identity)"
        ))),
    }
}

pub fn exit_code(s: &AwsStatus) -> i32 {
    if !s.permissions.missing.is_empty() || s.permissions.kms_keys.iter().any(|k| k.problem.is_some()) {
        EXIT_MISSING_PERMISSIONS
    } else if s.last_error.is_some() {
        EXIT_AWS_FAILED
    } else {
        EXIT_OK
    }
}

async fn kube_client(path: &PathBuf) -> Result<kube::Client, DoctorError> {
    let fail = |message: String| DoctorError::Kubeconfig { path: path.clone(), message };
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| fail(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| fail(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| fail(e.to_string()))
}

fn counts(map: &std::collections::BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "-".to_string();
    }
    map.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// The human-readable report.
pub fn text_report(s: &AwsStatus, params: &RefreshParams, now: jiff::Timestamp) -> String {
    let mut t = String::new();
    let mut line = |label: &str, value: String| t.push_str(&format!("{label:<13}{value}\n"));
    line(
        "scope",
        format!(
            "{}, region {}, FIPS endpoints {}{}",
            s.scope,
            s.region.as_deref().unwrap_or("?"),
            if s.fips_endpoints { "on" } else { "off" },
            if params.cluster_id.is_none() {
                " (no --cluster-id: every driver-created volume in the account)"
            } else {
                ""
            }
        ),
    );
    let p = &s.permissions;
    if !p.principal.is_empty() {
        line("identity", format!("{}{}", p.principal, p.arn_suffix()));
    }
    if let Some(code) = &s.last_error {
        line("AWS ERROR", format!("{code}: {}", s.last_error_message.as_deref().unwrap_or("")));
    }
    if s.last_success_at.is_some() {
        line("zones", if s.zones.is_empty() { "-".into() } else { s.zones.join(", ") });
        line(
            "encryption",
            format!(
                "by default {}; default KMS key {}",
                match s.encryption_by_default {
                    Some(true) => "on",
                    Some(false) => "OFF (volumes are encrypted only where the StorageClass asks)",
                    None => "unknown",
                },
                s.default_kms_key_id.as_deref().unwrap_or("unknown")
            ),
        );
        let v = &s.volumes;
        line(
            "volumes",
            format!(
                "{} ({} GiB); state: {}; type: {}; zone: {}",
                v.count,
                v.total_gib,
                counts(&v.by_state),
                counts(&v.by_type),
                counts(&v.by_zone)
            ),
        );
        let o = &s.orphaned;
        if !o.checked && params.cluster_id.is_none() {
            line("orphaned", "not checked: account-wide (pass --cluster-id)".into());
        } else if !o.checked {
            line("orphaned", "not checked (pass --kubeconfig to compare with the cluster's PersistentVolumes)".into());
        } else {
            line(
                "orphaned",
                format!(
                    "{} ({} GiB): available, older than the grace period, referenced by no PersistentVolume",
                    o.count, o.total_gib
                ),
            );
            for ov in &o.volumes {
                line(
                    "",
                    format!(
                        "{} {} GiB {} {} pv {} age {}",
                        ov.volume_id,
                        ov.size_gib,
                        ov.volume_type,
                        ov.zone,
                        ov.csi_volume_name.as_deref().unwrap_or("-"),
                        inventory::human_age(&ov.created_at, now)
                    ),
                );
            }
        }
        let lk = &s.leaks;
        if lk.checked {
            let lists = [
                ("released", "Released PersistentVolumes whose volume still exists", &lk.released_persistent_volumes),
                ("pv gone", "volumes whose PersistentVolume is gone", &lk.volumes_without_persistent_volume),
            ];
            for (label, what, l) in lists {
                line(label, format!("{} ({} GiB): {what}", l.count, l.total_gib));
                for i in &l.items {
                    line("", leak_line(i, now));
                }
            }
            if lk.snapshots_checked {
                let l = &lk.snapshots_without_content;
                line(
                    "snap gone",
                    format!("{} ({} GiB): snapshots no VolumeSnapshotContent references", l.count, l.total_gib),
                );
                for i in &l.items {
                    line("", leak_line(i, now));
                }
            } else {
                line("snap gone", "not checked (no VolumeSnapshotContents readable)".into());
            }
        }
        let st = &s.stuck;
        for va in &st.volume_attachments {
            line(
                "stuck VA",
                format!(
                    "{} ({} on {}): {}: {}",
                    va.name,
                    va.persistent_volume.as_deref().unwrap_or("-"),
                    va.node,
                    va.reason,
                    va.message
                ),
            );
        }
        if st.attachments.is_empty() && st.error_volumes.is_empty() {
            line("stuck", "none".into());
        } else {
            for a in &st.attachments {
                line(
                    "stuck",
                    format!(
                        "{} on {} {} for {}",
                        a.volume_id,
                        a.instance_id,
                        a.state,
                        inventory::human_age(&a.since, now)
                    ),
                );
            }
            if !st.error_volumes.is_empty() {
                line("error", format!("volumes in state error: {}", st.error_volumes.join(", ")));
            }
        }
        let sn = &s.snapshots;
        line("snapshots", format!("{} ({} GiB); state: {}", sn.count, sn.total_gib, counts(&sn.by_state)));
        if let Some(ver) = &sn.verification {
            line(
                "",
                if ver.readable {
                    format!("newest completed snapshot {} is readable (EBS direct API)", ver.snapshot_id)
                } else {
                    format!(
                        "newest completed snapshot {} NOT readable: {}",
                        ver.snapshot_id,
                        ver.message.as_deref().unwrap_or("")
                    )
                },
            );
        }
    }
    if let Some(why) = &p.not_verifiable {
        line("permissions", format!("not verifiable: {why}"));
    }
    if let Some(why) = &p.probes_stopped {
        line("probes", format!("STOPPED: {why}"));
    }
    if !p.checked.is_empty() {
        let kms = p.checked.iter().filter(|a| a.starts_with("kms:")).count();
        line(
            "permissions",
            if kms == 0 {
                format!("{} EC2 actions checked", p.checked.len())
            } else {
                format!("{} EC2 actions and {kms} KMS actions checked", p.checked.len() - kms)
            },
        );
        if p.missing.is_empty() {
            line("", "all granted".into());
        } else {
            line("", format!("MISSING: {}", p.missing.join(", ")));
        }
        for u in &p.unverified {
            line("", format!("unverified: {}: {}", u.action, u.reason));
        }
    }
    for k in &p.kms_keys {
        let mut what = vec![k.arn.clone().unwrap_or_else(|| k.key.clone())];
        if k.arn.as_deref().is_some_and(|a| a != k.key) {
            what.push(format!("(named {})", k.key));
        }
        if let Some(state) = &k.state {
            what.push(state.clone());
        }
        match k.manager.as_deref() {
            Some("AWS") => what.push("AWS managed: usable through EC2 by every principal of the account".into()),
            Some(m) => what.push(format!("{} managed", m.to_lowercase())),
            None => {}
        }
        if k.cross_account {
            what.push("in another account".into());
        }
        what.push(format!("for {}", k.storage_classes.join(", ")));
        line("kms key", what.join(" "));
        if !k.denied_by_key_policy.is_empty() {
            line("", format!("denied by the key policy: {}", k.denied_by_key_policy.join(", ")));
        }
        if let Some(problem) = &k.problem {
            line("", format!("UNUSABLE: {problem}"));
        }
    }
    let verdict = match exit_code(s) {
        EXIT_OK => "OK".to_string(),
        EXIT_MISSING_PERMISSIONS => {
            if s.permissions.missing.iter().any(|a| a.starts_with("kms:"))
                || s.permissions.kms_keys.iter().any(|k| k.problem.is_some())
            {
                "MISSING PERMISSIONS OR UNUSABLE KMS KEY: grant the ec2: actions above to the driver's role (AWS \
                    managed policy AmazonEBSCSIDriverPolicy covers them) and the kms: actions on their key (upstream's \
                    example KMS policy), or fix the key"
                    .to_string()
            } else {
                "MISSING PERMISSIONS: grant the actions above to the driver's role (AWS managed policy \
                    AmazonEBSCSIDriverPolicy covers them)"
                    .to_string()
            }
        }
        _ => format!("AWS CHECK FAILED ({})", s.last_error.as_deref().unwrap_or("?")),
    };
    line("result", verdict);
    t
}

fn leak_line(i: &crate::crd::LeakItem, now: jiff::Timestamp) -> String {
    format!(
        "{} {} GiB {} pv {}{} age {}",
        i.id,
        i.size_gib,
        i.state,
        i.persistent_volume.as_deref().unwrap_or("-"),
        i.claim.as_deref().map(|c| format!(" claim {c}")).unwrap_or_default(),
        inventory::human_age(&i.created_at, now)
    )
}

impl crate::crd::PermissionReport {
    fn arn_suffix(&self) -> String {
        self.principal_arn.as_deref().map(|a| format!(" [{a}]")).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn the_doctor_future_can_be_spawned() {
        let fut = run_doctor(DoctorArgs::default());
        assert_send(&fut);
    }

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        doctor: DoctorArgs,
    }

    #[test]
    fn flags_parse_into_doctor_args() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "doctor",
            "--region",
            "eu-west-1",
            "--cluster-id",
            "prod",
            "--role-arn",
            "arn:aws:iam::123456789012:role/ebs",
            "--endpoint-url",
            "http://127.0.0.1:5000",
            "--kubeconfig",
            "/tmp/kubeconfig",
            "--output",
            "json",
            "--verify-snapshots",
        ])
        .expect("flags parse");
        let a = cli.doctor;
        assert_eq!(a.region.as_deref(), Some("eu-west-1"));
        assert_eq!(a.role_arn.as_deref(), Some("arn:aws:iam::123456789012:role/ebs"));
        assert_eq!(a.kubeconfig, Some(PathBuf::from("/tmp/kubeconfig")));
        assert_eq!(a.output, OutputFormat::Json);
        let p = a.params().expect("valid");
        assert_eq!(p.cluster_id.as_deref(), Some("prod"));
        assert_eq!(p.orphan_grace, std::time::Duration::from_secs(3600));
        assert!(p.verify_snapshots);
        assert!(Cli::try_parse_from(["doctor", "--output", "yaml"]).is_err());
    }

    #[test]
    fn a_failed_check_reports_the_error_and_no_figures() {
        let s = AwsStatus {
            stale: true,
            scope: "cluster prod".into(),
            region: Some("us-east-1".into()),
            last_error: Some("AuthFailure".into()),
            last_error_message: Some("GetCallerIdentity: bad keys".into()),
            ..Default::default()
        };
        let text = text_report(
            &s,
            &RefreshParams { cluster_id: Some("prod".into()), ..Default::default() },
            jiff::Timestamp::now(),
        );
        assert!(text.contains("AWS ERROR    AuthFailure: GetCallerIdentity: bad keys"), "{text}");
        assert!(!text.contains("volumes"), "no figures without an answer: {text}");
        assert!(text.trim_end().ends_with("AWS CHECK FAILED (AuthFailure)"), "{text}");
        assert_eq!(exit_code(&s), EXIT_AWS_FAILED);
    }
}

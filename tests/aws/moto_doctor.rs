//! `doctor` against moto and the local API server (through a kubeconfig file, as a user runs it),
//! and against the fake for the missing-permissions exit code.

use std::sync::Arc;

use hardened_csi_operator::commands::doctor::{self, DoctorArgs, OutputFormat, run_doctor_with};
use hardened_csi_operator::crd::AwsStatus;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, PostParams};
use local_apiserver::LocalApiServer;

use crate::fake::Fake;
use crate::moto::{self, Moto};
use crate::moto_inventory::seed;

async fn cluster_with_pv(ids: &[String]) -> (LocalApiServer, tempfile::TempDir, std::path::PathBuf) {
    let server = LocalApiServer::start().await.expect("local API server");
    let pvs: Api<PersistentVolume> = Api::all(server.client());
    let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "pvc-a1"},
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
            "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": ids[0]}}
    }))
    .expect("PV");
    pvs.create(&PostParams::default(), &pv).await.expect("PV created");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path).expect("kubeconfig written");
    (server, dir, path)
}

fn args(moto: &Moto, kubeconfig: Option<std::path::PathBuf>, output: OutputFormat) -> DoctorArgs {
    DoctorArgs {
        region: Some(moto::REGION.into()),
        cluster_id: Some("alpha".into()),
        endpoint_url: Some(moto.url.clone()),
        kubeconfig,
        orphan_grace_period: "1s".into(),
        output,
        ..DoctorArgs::default()
    }
}

#[tokio::test]
async fn doctor_json_has_the_status_aws_shape_and_finds_orphans_through_the_kubeconfig() {
    let moto = Moto::start().await;
    let ids = seed(&moto).await;
    let (_server, _dir, kubeconfig) = cluster_with_pv(&ids).await;
    // Past the 1s grace period.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let mut out = Vec::new();
    let code =
        run_doctor_with(args(&moto, Some(kubeconfig), OutputFormat::Json), moto::static_credentials(), None, &mut out)
            .await
            .expect("doctor runs");

    let text = String::from_utf8(out).expect("UTF-8");
    let status: AwsStatus =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("doctor JSON is an AwsStatus ({e}): {text}"));
    assert_eq!(code, doctor::EXIT_OK, "{text}");
    assert!(!status.stale && status.last_error.is_none());
    assert_eq!(status.scope, "cluster alpha");
    assert_eq!((status.volumes.count, status.volumes.total_gib), (3, 35));
    assert_eq!(status.snapshots.count, 2);
    assert!(status.orphaned.checked);
    let orphans: Vec<&str> =
        status.orphaned.volumes.iter().map(|v| v.csi_volume_name.as_deref().unwrap_or("")).collect();
    assert_eq!(orphans.len(), 2);
    assert!(orphans.contains(&"pvc-a2") && orphans.contains(&"pvc-a3"), "{orphans:?}");
    assert_eq!(status.permissions.checked.len(), 19);
    assert!(status.permissions.missing.is_empty());
    // camelCase keys, as in status.aws.
    let raw: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    for key in
        ["checkedAt", "lastSuccessAt", "encryptionByDefault", "fipsEndpoints", "volumes", "orphaned", "permissions"]
    {
        assert!(raw.get(key).is_some(), "{key} missing in {text}");
    }
    assert!(raw["orphaned"]["volumes"][0].get("createdAt").is_some());
}

#[tokio::test]
async fn doctor_text_report_is_readable_and_says_when_orphans_were_not_checked() {
    let moto = Moto::start().await;
    seed(&moto).await;

    let mut out = Vec::new();
    let code = run_doctor_with(args(&moto, None, OutputFormat::Text), moto::static_credentials(), None, &mut out)
        .await
        .expect("doctor runs");

    let text = String::from_utf8(out).expect("UTF-8");
    println!("{text}");
    assert_eq!(code, doctor::EXIT_OK);
    let line = |label: &str| {
        text.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label} line in:\n{text}")).to_string()
    };
    assert!(line("scope").contains("cluster alpha, region us-east-1, FIPS endpoints off"));
    assert!(line("identity").contains("your credentials [arn:aws:sts::123456789012:user/moto]"));
    assert!(
        line("volumes").starts_with(
            "volumes      3 (35 GiB); state: available 3; type: gp2 1, gp3 2; zone: us-east-1a 2, us-east-1b 1"
        ),
        "{}",
        line("volumes")
    );
    assert!(line("encryption").contains("by default OFF") && line("encryption").contains("default KMS key unknown"));
    assert!(line("orphaned").contains("not checked (pass --kubeconfig"));
    assert!(line("snapshots").starts_with("snapshots    2 (30 GiB)"));
    assert!(line("permissions").contains("19 EC2 actions checked"));
    assert!(text.contains("all granted"));
    assert!(line("result").ends_with("OK"));
}

#[tokio::test]
async fn doctor_with_role_arn_assumes_the_role_with_the_callers_credentials() {
    let moto = Moto::start().await;
    let mut a = args(&moto, None, OutputFormat::Json);
    a.role_arn = Some("arn:aws:iam::123456789012:role/ebs-csi-driver".into());

    let mut out = Vec::new();
    let code = run_doctor_with(a, moto::static_credentials(), None, &mut out).await.expect("doctor runs");

    let status: AwsStatus = serde_json::from_slice(&out).expect("AwsStatus JSON");
    assert_eq!(code, doctor::EXIT_OK);
    assert_eq!(
        status.permissions.principal,
        "role arn:aws:iam::123456789012:role/ebs-csi-driver (assumed with the caller's credentials)"
    );
    assert!(
        status
            .permissions
            .principal_arn
            .as_deref()
            .is_some_and(|a| a.contains("assumed-role/ebs-csi-driver/hardened-csi-operator-preflight")),
        "{:?}",
        status.permissions.principal_arn
    );
}

/// `--sts-endpoint` (`spec.aws.stsEndpoint`) takes every STS call, AssumeRole of `--role-arn`
/// included, away from `--endpoint-url`: with a second moto as STS the role is assumed there; with
/// an STS endpoint nobody answers, the role cannot be assumed although EC2's endpoint works.
#[tokio::test]
async fn doctor_with_role_arn_assumes_the_role_at_the_sts_endpoint() {
    let moto = Moto::start().await;
    let sts = Moto::start().await;
    let role = "arn:aws:iam::123456789012:role/ebs-csi-driver";
    let mut a = args(&moto, None, OutputFormat::Json);
    a.role_arn = Some(role.into());
    a.sts_endpoint = Some(sts.url.clone());
    let mut out = Vec::new();
    let code = run_doctor_with(a.clone(), moto::static_credentials(), None, &mut out).await.expect("doctor runs");
    let status: AwsStatus = serde_json::from_slice(&out).expect("AwsStatus JSON");
    assert_eq!(code, doctor::EXIT_OK, "{status:?}");
    assert!(!status.zones.is_empty(), "{status:?}");
    assert!(
        status.permissions.principal_arn.as_deref().is_some_and(|a| a.contains("assumed-role/ebs-csi-driver/")),
        "{:?}",
        status.permissions.principal_arn
    );

    // Nothing listens there: nothing is assumed, and the report says it is AWS that failed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let mut out = Vec::new();
    let a = doctor::DoctorArgs { sts_endpoint: Some(dead), ..a };
    let code = run_doctor_with(a, moto::static_credentials(), None, &mut out).await.expect("doctor runs");
    let status: AwsStatus = serde_json::from_slice(&out).expect("AwsStatus JSON");
    assert_ne!(code, doctor::EXIT_OK, "{status:?}");
    assert!(status.permissions.principal_arn.is_none(), "{status:?}");
    // EC2 (at --endpoint-url, which answers) is called as the role, and the role is not assumed
    // there either: no zones.
    assert!(status.zones.is_empty(), "EC2 answered with credentials not assumed at the STS endpoint: {status:?}");
}

#[tokio::test]
async fn doctor_exits_non_zero_when_permissions_are_missing_and_rejects_bad_arguments() {
    let mut f = Fake::new(2, 1);
    f.deny = ["CreateSnapshot".to_string()].into();
    let fake = Arc::new(f);
    let a = DoctorArgs { region: Some("us-east-1".into()), cluster_id: Some("prod".into()), ..DoctorArgs::default() };
    let mut out = Vec::new();
    let code = run_doctor_with(a.clone(), moto::static_credentials(), Some(fake.client()), &mut out)
        .await
        .expect("doctor runs");
    let text = String::from_utf8(out).expect("UTF-8");
    assert_eq!(code, doctor::EXIT_MISSING_PERMISSIONS, "{text}");
    assert!(text.contains("MISSING: ec2:CreateSnapshot"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("result") && l.contains("MISSING PERMISSIONS")), "{text}");

    // AWS unreachable: exit 2, the error code in the report.
    let mut t = Fake::new(2, 1);
    t.throttle = std::sync::Mutex::new([("DescribeAvailabilityZones".to_string(), usize::MAX)].into());
    let throttled = Arc::new(t);
    let mut out = Vec::new();
    let code = run_doctor_with(a.clone(), moto::static_credentials(), Some(throttled.client()), &mut out)
        .await
        .expect("doctor runs");
    assert_eq!(code, doctor::EXIT_AWS_FAILED);
    assert!(
        String::from_utf8_lossy(&out).contains("AWS ERROR    RequestLimitExceeded: DescribeAvailabilityZones"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    for (bad, flag) in [
        (DoctorArgs { orphan_grace_period: "soon".into(), ..a.clone() }, "--orphan-grace-period"),
        (DoctorArgs { role_arn: Some("ebs-role".into()), ..a.clone() }, "--role-arn"),
        (DoctorArgs { endpoint_url: Some("localhost:5000".into()), ..a.clone() }, "--endpoint-url"),
        (DoctorArgs { kubeconfig: Some("/nonexistent/kubeconfig".into()), ..a.clone() }, "--kubeconfig"),
    ] {
        let err = run_doctor_with(bad, moto::static_credentials(), Some(fake.client()), &mut Vec::new())
            .await
            .expect_err("bad argument rejected");
        assert!(err.to_string().starts_with(flag), "{err}");
    }
}

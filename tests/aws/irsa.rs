//! The driver's identity, for every kind: IRSA (a TokenRequest for the driver's service account,
//! answered by the local API server, then STS AssumeRoleWithWebIdentity, answered by the fake), EKS
//! Pod Identity (the same TokenRequest with audience pods.eks.amazonaws.com, then EKS Auth
//! AssumeRoleForPodIdentity: moto has no EKS Auth, the fake stands in for it on the real wire
//! protocol), and static keys (not verifiable by the operator: no probe is sent).

use std::sync::Arc;

use hardened_csi_operator::aws::inventory::{self, RefreshParams};
use hardened_csi_operator::aws::poller::{PollerSettings, SdkFactory};
use hardened_csi_operator::aws::sdk::SdkAws;
use hardened_csi_operator::crd::{HardenedCsiDriverSpec, Identity, Irsa, PodIdentity, SecretRef};
use hardened_csi_operator::reconciler::conditions::aws_conditions as conditions;
use hardened_csi_operator::runtime::metrics::Metrics;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use local_apiserver::LocalApiServer;
use serde_json::Value;

use crate::fake::{self, Fake};
use crate::moto;

const ROLE: &str = "arn:aws:iam::123456789012:role/ebs-csi-driver";

pub(crate) fn irsa_spec() -> HardenedCsiDriverSpec {
    let mut spec = HardenedCsiDriverSpec::default();
    spec.aws.region = Some("us-east-1".into());
    spec.aws.cluster_id = Some("prod".into());
    spec.aws.identity = Identity { irsa: Some(Irsa { role_arn: ROLE.into() }), pod_identity: None, secret_ref: None };
    spec
}

fn pod_identity_spec() -> HardenedCsiDriverSpec {
    let mut spec = irsa_spec();
    spec.aws.identity = Identity { irsa: None, pod_identity: Some(PodIdentity {}), secret_ref: None };
    spec
}

async fn api_for(server: &LocalApiServer, fake: &Arc<Fake>, metrics: &Arc<Metrics>) -> SdkAws {
    api_for_spec(server, fake, metrics, &irsa_spec()).await
}

pub(crate) async fn api_for_spec(
    server: &LocalApiServer,
    fake: &Arc<Fake>,
    metrics: &Arc<Metrics>,
    spec: &HardenedCsiDriverSpec,
) -> SdkAws {
    let factory = SdkFactory {
        client: server.client(),
        metrics: metrics.aws.clone(),
        settings: PollerSettings {
            http_client: Some(fake.client()),
            credentials: moto::static_credentials(),
            retry: moto::fast_retries(),
            ..PollerSettings::default()
        },
    };
    SdkAws::new(factory.aws_settings(spec)).await.expect("SDK client builds")
}

pub(crate) async fn create_service_account(server: &LocalApiServer) {
    let sas: Api<ServiceAccount> = Api::namespaced(server.client(), "kube-system");
    let sa: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "ebs-csi-controller-sa"}})).expect("sa");
    sas.create(&PostParams::default(), &sa).await.expect("service account created");
}

/// The claims of a JWT (base64url, no padding).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("JWT has a payload");
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in payload.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c}"),
        } as u32;
        bits = bits << 6 | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    serde_json::from_slice(&out).expect("claims are JSON")
}

#[tokio::test]
async fn irsa_probes_run_as_the_driver_role_through_token_request_and_web_identity() {
    let server = LocalApiServer::start().await.expect("local API server");
    create_service_account(&server).await;
    let fake = Arc::new(Fake::new(30, 3));
    let metrics = Arc::new(Metrics::new());
    let api = api_for(&server, &fake, &metrics).await;
    let params = RefreshParams::from_spec(&irsa_spec());

    let status = inventory::refresh(&api, &params, None, None, jiff::Timestamp::now()).await;

    assert!(!status.stale, "{:?}", status.last_error_message);
    assert_eq!(
        status.permissions.principal,
        format!("irsa role {ROLE} (service account kube-system/ebs-csi-controller-sa)")
    );
    assert_eq!(status.permissions.principal_arn.as_deref(), Some(fake::ASSUMED_ARN));
    let reqs = fake.requests();
    let sts: Vec<_> = reqs.iter().filter(|r| r.action == "AssumeRoleWithWebIdentity").collect();
    assert_eq!(sts.len(), 1);
    assert_eq!(sts[0].params.get("RoleArn").map(String::as_str), Some(ROLE));
    assert!(sts[0].authorization.is_empty(), "AssumeRoleWithWebIdentity is unsigned: {}", sts[0].authorization);
    let token = sts[0].params.get("WebIdentityToken").expect("token sent");
    let c = claims(token);
    assert_eq!(c["aud"], serde_json::json!(["sts.amazonaws.com"]));
    assert_eq!(c["sub"], "system:serviceaccount:kube-system:ebs-csi-controller-sa");
    assert_eq!(fake.count("GetCallerIdentity"), 0, "the assumed role's ARN comes from STS");
    let ec2: Vec<_> = reqs.iter().filter(|r| r.host.starts_with("ec2.")).collect();
    assert!(!ec2.is_empty());
    for r in &ec2 {
        assert!(
            r.authorization.contains(&format!("Credential={}/", fake::ASSUMED_KEY)),
            "{} signed with {}",
            r.action,
            r.authorization
        );
    }
    assert_eq!(metrics.aws.requests_total() as usize, reqs.len());

    // The next refresh reuses the role's credentials: no TokenRequest, no STS call.
    let again = inventory::refresh(&api, &params, None, Some(&status), jiff::Timestamp::now()).await;
    assert!(!again.stale);
    assert_eq!(fake.count("AssumeRoleWithWebIdentity"), 1);
}

#[tokio::test]
async fn irsa_without_the_service_account_says_what_is_missing() {
    let server = LocalApiServer::start().await.expect("local API server");
    let fake = Arc::new(Fake::new(3, 1));
    let metrics = Arc::new(Metrics::new());
    let api = api_for(&server, &fake, &metrics).await;

    let status =
        inventory::refresh(&api, &RefreshParams::from_spec(&irsa_spec()), None, None, jiff::Timestamp::now()).await;

    assert!(status.stale);
    assert_eq!(status.last_error.as_deref(), Some("ServiceAccountToken"));
    assert!(
        status.last_error_message.as_deref().is_some_and(|m| m.contains("kube-system/ebs-csi-controller-sa not found")),
        "{:?}",
        status.last_error_message
    );
    assert!(fake.requests().is_empty(), "nothing reaches AWS without the driver's token");
    let c = conditions(&status);
    assert_eq!((c[0].status, c[0].reason.as_str()), ("False", "CredentialsFailed"));
    assert!(c[0].message.contains("serviceaccounts/token"), "{}", c[0].message);
}

#[tokio::test]
async fn irsa_rejected_by_sts_reports_the_sts_code_and_the_trust_policy_hint() {
    let server = LocalApiServer::start().await.expect("local API server");
    create_service_account(&server).await;
    let mut f = Fake::new(3, 1);
    f.sts_error = Some("InvalidIdentityToken".into());
    let fake = Arc::new(f);
    let metrics = Arc::new(Metrics::new());
    let api = api_for(&server, &fake, &metrics).await;

    let status =
        inventory::refresh(&api, &RefreshParams::from_spec(&irsa_spec()), None, None, jiff::Timestamp::now()).await;

    assert!(status.stale);
    assert_eq!(status.last_error.as_deref(), Some("InvalidIdentityToken"));
    assert_eq!(fake.count("AssumeRoleWithWebIdentity"), 1, "a rejected token is not retried");
    assert_eq!(fake.requests().len(), 1, "no EC2 call without the role");
    let c = conditions(&status);
    assert!(c[0].message.contains("trust policy"), "{}", c[0].message);
}

/// Pod Identity (the default identity) was probed with the operator's own credentials before, so
/// the operator needed the driver's policy and the report described the wrong identity.
#[tokio::test]
async fn pod_identity_probes_run_as_the_driver_role_through_eks_auth() {
    let server = LocalApiServer::start().await.expect("local API server");
    create_service_account(&server).await;
    let fake = Arc::new(Fake::new(30, 3));
    let metrics = Arc::new(Metrics::new());
    let api = api_for_spec(&server, &fake, &metrics, &pod_identity_spec()).await;
    let params = RefreshParams::from_spec(&pod_identity_spec());

    let status = inventory::refresh(&api, &params, None, None, jiff::Timestamp::now()).await;

    assert!(!status.stale, "{:?} {:?}", status.last_error, status.last_error_message);
    assert_eq!(
        status.permissions.principal,
        "pod identity role of service account kube-system/ebs-csi-controller-sa (EKS cluster prod)"
    );
    assert_eq!(status.permissions.principal_arn.as_deref(), Some(fake::POD_IDENTITY_ARN));
    assert!(status.permissions.not_verifiable.is_none());
    let reqs = fake.requests();
    let auth: Vec<_> = reqs.iter().filter(|r| r.action == "AssumeRoleForPodIdentity").collect();
    assert_eq!(auth.len(), 1);
    assert_eq!(auth[0].params.get("cluster").map(String::as_str), Some("prod"));
    assert!(
        auth[0].authorization.contains("Credential=testing/") && auth[0].authorization.contains("/eks-auth/"),
        "EKS Auth is signed with the operator's own credentials for eks-auth: {}",
        auth[0].authorization
    );
    let c = claims(auth[0].params.get("token").expect("token sent"));
    assert_eq!(c["aud"], serde_json::json!(["pods.eks.amazonaws.com"]));
    assert_eq!(c["sub"], "system:serviceaccount:kube-system:ebs-csi-controller-sa");
    let ec2: Vec<_> = reqs.iter().filter(|r| r.host.starts_with("ec2.")).collect();
    assert!(ec2.iter().any(|r| r.action == "DeleteVolume"), "the probes ran");
    for r in &ec2 {
        assert!(
            r.authorization.contains(&format!("Credential={}/", fake::POD_IDENTITY_KEY)),
            "{} signed with {}",
            r.action,
            r.authorization
        );
    }
    assert_eq!(fake.count("GetCallerIdentity"), 0);
    let again = inventory::refresh(&api, &params, None, Some(&status), jiff::Timestamp::now()).await;
    assert!(!again.stale);
    assert_eq!(fake.count("AssumeRoleForPodIdentity"), 1, "credentials are reused until close to expiry");
}

#[tokio::test]
async fn pod_identity_without_an_association_says_so() {
    let server = LocalApiServer::start().await.expect("local API server");
    create_service_account(&server).await;
    let mut f = Fake::new(3, 1);
    f.eks_auth_error = Some("ResourceNotFoundException".into());
    let fake = Arc::new(f);
    let metrics = Arc::new(Metrics::new());
    let api = api_for_spec(&server, &fake, &metrics, &pod_identity_spec()).await;

    let status =
        inventory::refresh(&api, &RefreshParams::from_spec(&pod_identity_spec()), None, None, jiff::Timestamp::now())
            .await;

    assert!(status.stale);
    assert_eq!(status.last_error.as_deref(), Some("ResourceNotFoundException"));
    assert_eq!(fake.requests().len(), 1, "no EC2 call without the driver's role");
    let c = conditions(&status);
    assert!(c[0].message.contains("Pod Identity association"), "{}", c[0].message);
}

/// Static keys were probed with the operator's credentials and reported as the driver's.
#[tokio::test]
async fn static_keys_are_reported_not_verifiable_with_the_doctor_command_and_never_probed() {
    let server = LocalApiServer::start().await.expect("local API server");
    let mut spec = irsa_spec();
    spec.aws.identity = Identity {
        irsa: None,
        pod_identity: None,
        secret_ref: Some(
            serde_json::from_value::<SecretRef>(serde_json::json!({"name": "aws-keys"})).expect("SecretRef"),
        ),
    };
    let fake = Arc::new(Fake::new(3, 1));
    let metrics = Arc::new(Metrics::new());
    let api = api_for_spec(&server, &fake, &metrics, &spec).await;

    let status = inventory::refresh(&api, &RefreshParams::from_spec(&spec), None, None, jiff::Timestamp::now()).await;

    assert!(!status.stale, "{:?}", status.last_error_message);
    assert_eq!(status.volumes.count, 3, "the inventory still runs with the operator's credentials");
    let why = status.permissions.not_verifiable.as_deref().expect("not verifiable");
    assert!(
        why.contains("kube-system/aws-keys") && why.contains("hardened-csi-operator doctor --region us-east-1"),
        "{why}"
    );
    assert!(status.permissions.checked.is_empty() && status.permissions.missing.is_empty());
    let probes = ["CreateVolume", "DeleteVolume", "AttachVolume", "DescribeInstances"];
    assert!(fake.requests().iter().all(|r| !probes.contains(&r.action.as_str())), "no probe as someone else");
    let c = conditions(&status);
    assert_eq!((c[1].status, c[1].reason.as_str()), ("Unknown", "NotVerifiable"));
}

/// `doctor --service-account` does what the operator does: a TokenRequest through the kubeconfig,
/// then EKS Auth (no role annotation) or STS web identity (annotated role).
#[tokio::test]
async fn doctor_service_account_mode_takes_the_drivers_identity_like_the_operator() {
    use hardened_csi_operator::commands::doctor::{self, DoctorArgs, OutputFormat, run_doctor_with};
    let server = LocalApiServer::start().await.expect("local API server");
    create_service_account(&server).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("kubeconfig written");
    let args = DoctorArgs {
        region: Some("us-east-1".into()),
        cluster_id: Some("prod".into()),
        service_account: Some("kube-system/ebs-csi-controller-sa".into()),
        kubeconfig: Some(kubeconfig),
        output: OutputFormat::Json,
        ..DoctorArgs::default()
    };

    let fake = Arc::new(Fake::new(4, 1));
    let mut out = Vec::new();
    let code = run_doctor_with(args.clone(), moto::static_credentials(), Some(fake.client()), &mut out)
        .await
        .expect("doctor runs");
    let status: hardened_csi_operator::crd::AwsStatus = serde_json::from_slice(&out).expect("AwsStatus JSON");
    assert_eq!(code, doctor::EXIT_OK, "{status:?}");
    assert!(status.permissions.principal.starts_with("pod identity role of service account"), "{status:?}");
    assert_eq!(fake.count("AssumeRoleForPodIdentity"), 1);
    assert!(status.orphaned.checked, "the kubeconfig's PersistentVolumes were read");

    // The same account annotated for IRSA: the annotated role, through STS.
    let sas: Api<ServiceAccount> = Api::namespaced(server.client(), "kube-system");
    let patch = serde_json::json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": ROLE}}});
    sas.patch("ebs-csi-controller-sa", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .expect("annotated");
    let fake = Arc::new(Fake::new(4, 1));
    let mut out = Vec::new();
    run_doctor_with(args.clone(), moto::static_credentials(), Some(fake.client()), &mut out).await.expect("doctor");
    let status: hardened_csi_operator::crd::AwsStatus = serde_json::from_slice(&out).expect("AwsStatus JSON");
    assert!(status.permissions.principal.starts_with(&format!("irsa role {ROLE}")), "{status:?}");
    assert_eq!((fake.count("AssumeRoleWithWebIdentity"), fake.count("AssumeRoleForPodIdentity")), (1, 0));

    // Bad input names the flag and what would be valid.
    let bad = DoctorArgs { service_account: Some("ebs-csi-controller-sa".into()), ..args.clone() };
    let err = run_doctor_with(bad, moto::static_credentials(), None, &mut Vec::new()).await.expect_err("refused");
    assert!(err.to_string().contains("--service-account") && err.to_string().contains("NAMESPACE/NAME"), "{err}");
    let none = DoctorArgs { kubeconfig: None, ..args };
    let err = run_doctor_with(none, moto::static_credentials(), None, &mut Vec::new()).await.expect_err("refused");
    assert!(err.to_string().contains("needs --kubeconfig"), "{err}");
}

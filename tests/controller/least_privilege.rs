//! Least privilege that holds: the operator's token, with exactly the chart's RBAC, can do what
//! the operator needs and nothing that leads to more. The escalation attempts a stolen token
//! would make are refused by the API server; every grant the chart makes is used by some part
//! of a full lifecycle; the install-time guardrails refuse a spec outside them.

use std::sync::Arc;
use std::time::Duration;

use hardened_csi_operator::aws::cluster::{ClusterWatches, VolumeSnapshotContent};
use hardened_csi_operator::aws::poller::{ApiFactory, PollerSettings, SdkFactory};
use hardened_csi_operator::aws::sdk::CredentialSource;
use hardened_csi_operator::aws::sdk::service_account_token;
use hardened_csi_operator::crd::HardenedCsiDriverSpec;
use hardened_csi_operator::reconciler::policy::InstallPolicy;
use hardened_csi_operator::runtime::config::LeaseSettings;
use hardened_csi_operator::runtime::leader::LeaderElection;
use hardened_csi_operator::runtime::metrics::Metrics;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::support::{DRIVER_NAMESPACE, Harness, OPERATOR_NAMESPACE, operator_user, wait_for};
use super::{DRIVER, ready, spec};

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("object")
}

/// The poller's factory of a driver's AWS client, as the operator (`client`): what reads the CA
/// bundle's ConfigMap. Static operator credentials, so building makes no other API call.
fn aws_factory(client: &kube::Client) -> SdkFactory {
    SdkFactory {
        client: client.clone(),
        metrics: Metrics::new().aws.clone(),
        settings: PollerSettings {
            credentials: CredentialSource::Static {
                access_key_id: "AKIALEASTPRIVILEGE".into(),
                secret_access_key: "not-a-secret".into(),
            },
            default_region: Some("us-east-1".into()),
            ..PollerSettings::default()
        },
    }
}

/// A driver spec (JSON, as the user writes it) as the poller gets it.
fn typed(spec: &Value) -> HardenedCsiDriverSpec {
    serde_json::from_value(spec.clone()).expect("spec")
}

/// The API server's answer must be 403 Forbidden.
fn forbidden<T: std::fmt::Debug>(what: &str, r: Result<T, kube::Error>) {
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stolen_operator_token_cannot_escalate() {
    let h = Harness::start(1).await;
    let admin = h.client.clone();
    let op = h.operator.clone();
    let pp = PostParams::default();
    Api::<ServiceAccount>::namespaced(admin.clone(), "kube-system")
        .create(&pp, &obj(json!({"metadata": {"name": "default"}})))
        .await
        .ok();
    Api::<Secret>::namespaced(admin.clone(), DRIVER_NAMESPACE)
        .create(&pp, &obj(json!({"metadata": {"name": "aws-secret"}, "stringData": {"key": "v"}})))
        .await
        .expect("secret");

    // A token for any other identity: kube-system/default (and through it every workload identity).
    let sas: Api<ServiceAccount> = Api::namespaced(op.clone(), "kube-system");
    forbidden(
        "token for kube-system/default",
        sas.create_token_request("default", &pp, &TokenRequest::default()).await,
    );
    // A ClusterRole with a rule the operator does not hold (no escalate): refused.
    let crs: Api<ClusterRole> = Api::all(op.clone());
    let wide: ClusterRole = obj(json!({"metadata": {"name": "stolen"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]}));
    forbidden("create a ClusterRole with secrets list", crs.create(&pp, &wide).await);
    // Even a ClusterRole with only rules it holds: no create on RBAC at all.
    let held: ClusterRole = obj(json!({"metadata": {"name": "stolen"},
        "rules": [{"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["list"]}]}));
    forbidden("create a ClusterRole it could hold", crs.create(&pp, &held).await);
    forbidden(
        "patch cluster-admin",
        crs.patch("cluster-admin", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
            .await,
    );
    forbidden(
        "apply over a driver ClusterRole",
        crs.patch(
            "ebs-csi-node-role",
            &PatchParams::apply("thief").force(),
            &Patch::Apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})),
        )
        .await,
    );
    // Bind cluster-admin (or the driver's roles) to itself: no bind, no write on bindings.
    let crbs: Api<ClusterRoleBinding> = Api::all(op.clone());
    let bind_admin: ClusterRoleBinding = obj(json!({"metadata": {"name": "stolen"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "hardened-csi-operator", "namespace": OPERATOR_NAMESPACE}]}));
    forbidden("bind cluster-admin", crbs.create(&pp, &bind_admin).await);
    forbidden("a Role in the driver namespace", {
        let roles: Api<Role> = Api::namespaced(op.clone(), DRIVER_NAMESPACE);
        roles.create(&pp, &obj(json!({"metadata": {"name": "stolen"}, "rules": []}))).await
    });
    // Workloads outside the driver namespace, or under another name inside it.
    let pod_template = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "x",
        "image": "dhi.io/busybox"}]}});
    let deployment = |name: &str| -> Deployment {
        obj(json!({"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": "x"}},
            "template": pod_template}}))
    };
    forbidden(
        "a Deployment in default",
        Api::<Deployment>::namespaced(op.clone(), "default").create(&pp, &deployment("x")).await,
    );
    let in_driver_ns: Api<Deployment> = Api::namespaced(op.clone(), DRIVER_NAMESPACE);
    forbidden("a Deployment with another name", in_driver_ns.create(&pp, &deployment("x")).await);
    forbidden(
        "a Deployment with another name, by apply",
        in_driver_ns
            .patch(
                "x",
                &PatchParams::apply("thief"),
                &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                    "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": pod_template}})),
            )
            .await,
    );
    // Secrets: only the named pull Secrets, and never a list.
    let secrets: Api<Secret> = Api::namespaced(op.clone(), DRIVER_NAMESPACE);
    forbidden("read another Secret", secrets.get("aws-secret").await);
    forbidden("list Secrets", secrets.list(&Default::default()).await);
    // Nothing of the above got through: the operator's identity never wrote an RBAC object.
    let rbac_writes: Vec<_> = h
        .server
        .access_log(&operator_user())
        .into_iter()
        .filter(|a| a.api_group == "rbac.authorization.k8s.io" && !["get", "list", "watch"].contains(&a.verb.as_str()))
        .collect();
    assert!(rbac_writes.is_empty(), "{rbac_writes:#?}");
    h.server.reset_access_log();
    h.stop().await;
}

#[tokio::test]
async fn a_driver_outside_the_install_time_namespace_or_registries_is_refused() {
    let h = Harness::start(1).await;
    let mut s = spec();
    s["namespace"] = json!("storage");
    h.create_driver(DRIVER, s).await;
    let c = h.wait_condition(DRIVER, "SpecValid", "False").await;
    assert_eq!(c["reason"], json!("NotAllowedByInstallation"), "{c}");
    let msg = c["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(r#"spec.namespace is "storage""#)
            && msg.contains(r#"driver namespace "kube-system""#)
            && msg.contains("driverNamespace=storage"),
        "{msg}"
    );
    let deploy = h.dynamic("apps/v1", "Deployment", "deployments", Some("storage"));
    assert!(h.managed_names(&deploy).await.is_empty());
    h.drivers().delete(DRIVER, &DeleteParams::default()).await.expect("delete");
    h.wait_driver_gone(DRIVER).await;

    let mut s = spec();
    s["images"] = json!({"mirror": "registry.example.com/dhi"});
    h.create_driver(DRIVER, s).await;
    let c = h.wait_condition(DRIVER, "SpecValid", "False").await;
    let msg = c["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(r#"spec.images.mirror is "registry.example.com/dhi""#) && msg.contains("allowedRegistries"),
        "{msg}"
    );
    let deploy = h.dynamic("apps/v1", "Deployment", "deployments", Some("kube-system"));
    assert!(h.managed_names(&deploy).await.is_empty());

    // spec.namespace cannot move on an existing driver: refused at admission, with the way to move.
    let err = h
        .drivers()
        .patch(DRIVER, &PatchParams::default(), &Patch::Merge(json!({"spec": {"namespace": "storage"}})))
        .await
        .expect_err("the namespace is immutable");
    let kube::Error::Api(s) = err else { panic!("{err}") };
    assert_eq!(s.code, 422, "{s:?}");
    assert!(
        s.message.contains("spec.namespace cannot change") && s.message.contains("driverNamespace"),
        "{}",
        s.message
    );
    h.stop().await;

    // The same mirror, added at install time: deployed.
    let policy = InstallPolicy {
        allowed_registries: vec!["dhi.io".into(), "registry.example.com/dhi".into()],
        ..InstallPolicy::default()
    };
    let h = Harness::start_with_policy("1.33", 1, true, policy).await;
    let mut s = spec();
    s["images"] = json!({"mirror": "registry.example.com/dhi"});
    h.create_driver(DRIVER, s).await;
    ready(&h).await;
    h.stop().await;
}

/// One full lifecycle as the operator's identity: leader election, create (with pull Secrets, a
/// CA bundle, metrics Services and their ServiceMonitors, classes, the snapshot stack), the IRSA
/// token, the AWS client with the CA bundle, an update that recreates a class, pruning, a deletion
/// held by the volume guard and then forced. Afterwards every grant of the chart's RBAC
/// must have been used: a grant no part of the operator needs fails here.
#[tokio::test]
async fn every_grant_of_the_chart_is_used_by_some_part_of_the_lifecycle() {
    // 1.34 serves VolumeAttributesClasses. No snapshot CRD: the driver's snapshot stack
    // (spec.snapshots.controller) applies all three, by name.
    let h = Harness::start_on("1.34", 2, false).await;
    let metrics = Arc::new(Metrics::new());
    let settings = LeaseSettings {
        name: "hardened-csi-operator".into(),
        namespace: OPERATOR_NAMESPACE.into(),
        identity: "replica-a".into(),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(200),
    };
    let election = LeaderElection::start(h.operator.clone(), settings, metrics);
    wait_for("leadership", || async { election.is_leader().then_some(Value::Null) }).await;
    let crds: Api<CustomResourceDefinition> = Api::all(h.client.clone());
    // The Prometheus Operator's ServiceMonitor CRD: the driver's ServiceMonitors are created, then
    // pruned with the metrics.
    crds.create(&PostParams::default(), &super::support::service_monitor_crd()).await.expect("ServiceMonitor CRD");

    // What an earlier version left, so the create recreates it (read by name, deleted, applied).
    h.apply_old_csidriver(DRIVER).await;

    super::support::create_pull_secret_named(&h.client, "dhi-pull").await;
    let pem = h.server.ca_certificate_pem().expect("the server's CA");
    super::support::create_ca_bundle_named(&h.client, super::support::CA_BUNDLE, &pem).await;
    let mut s = spec();
    s["images"] = json!({"pullSecrets": [super::support::PULL_SECRET, "dhi-pull"]});
    s["aws"]["caBundle"] = json!({"name": super::support::CA_BUNDLE});
    s["metrics"] = json!({"enabled": true, "serviceMonitor": {"enabled": true}});
    s["snapshots"] = json!({"controller": {"enabled": true}});
    s["storageClasses"] = json!([{"name": "gp3"}, {"name": "io2", "type": "io2", "iops": 4000}]);
    s["volumeSnapshotClasses"] = json!([{"name": "ebs-snapshots", "default": true}, {"name": "archive"}]);
    s["volumeAttributesClasses"] =
        json!([{"name": "fast", "type": "gp3", "iops": 16000}, {"name": "slow", "type": "sc1"}]);
    h.create_driver(DRIVER, s.clone()).await;
    ready(&h).await;
    h.wait_condition(DRIVER, "PullSecretsPresent", "True").await;
    h.wait_condition(DRIVER, "ServiceMonitor", "True").await;
    h.wait_condition(DRIVER, "SnapshotController", "True").await;
    assert!(crds.get_opt(VolumeSnapshotContent::crd_name()).await.expect("get").is_some(), "the operator's CRD");

    // The AWS inventory's cluster side (the harness runs no AWS poller): its watches of
    // PersistentVolumes, VolumeAttachments, Nodes and VolumeSnapshotContents (the CRD the
    // operator applied), as the operator.
    let inventory = ClusterWatches::start(h.operator.clone());
    inventory.wait_listed(Duration::from_secs(10)).await;
    wait_for("the inventory's watches", || async {
        let log = h.server.access_log(&operator_user());
        let watching = |r: &str| log.iter().any(|a| a.resource == r && a.verb == "watch");
        ["persistentvolumes", "volumeattachments", "nodes", "volumesnapshotcontents"]
            .iter()
            .all(|r| watching(r))
            .then_some(Value::Null)
    })
    .await;

    let token = service_account_token(
        &h.operator,
        DRIVER_NAMESPACE,
        "ebs-csi-controller-sa",
        hardened_csi_operator::aws::STS_AUDIENCE,
    )
    .await;
    assert!(token.is_ok_and(|t| !t.is_empty()), "the IRSA TokenRequest for the driver's ServiceAccount");
    // The poller builds the driver's AWS client: it reads the CA bundle's ConfigMap.
    let built = aws_factory(&h.operator).build(&typed(&s)).await;
    assert!(built.is_ok(), "the AWS client with the CA bundle: {:?}", built.err());

    // The driver's RBAC breaks and is repaired, twice: Ready goes False and True again, so the
    // second round's events are the first round's again (a patch of their series). The watches of
    // the driver's RBAC by name see both without another trigger.
    let crs: Api<ClusterRole> = Api::all(h.client.clone());
    for _ in 0..2 {
        crs.delete("ebs-csi-node-role", &DeleteParams::default()).await.expect("delete");
        h.wait_condition(DRIVER, "Ready", "False").await;
        super::support::install_driver_rbac(&h.client).await;
        h.wait_condition(DRIVER, "Ready", "True").await;
    }

    // Update: a changed class parameter recreates the class; fewer classes prune the rest (a
    // VolumeAttributesClass only once no claim or volume names it).
    s["storageClasses"] = json!([{"name": "gp3", "iops": 4000}]);
    s["volumeSnapshotClasses"] = json!([{"name": "ebs-snapshots", "default": true}]);
    s["volumeAttributesClasses"] = json!([{"name": "fast", "type": "gp3", "iops": 8000}]);
    h.patch_spec(
        DRIVER,
        json!({"storageClasses": s["storageClasses"], "volumeSnapshotClasses":
        s["volumeSnapshotClasses"], "volumeAttributesClasses": s["volumeAttributesClasses"],
        "metrics": {"enabled": false, "serviceMonitor": {"enabled": false}}}),
    )
    .await;
    let sc = h.dynamic("storage.k8s.io/v1", "StorageClass", "storageclasses", None);
    wait_for("io2 pruned", || async { (!h.exists(&sc, "io2").await).then_some(Value::Null) }).await;
    let vac = h.dynamic("storage.k8s.io/v1", "VolumeAttributesClass", "volumeattributesclasses", None);
    wait_for("slow pruned", || async { (!h.exists(&vac, "slow").await).then_some(Value::Null) }).await;
    h.wait_condition(DRIVER, "Ready", "True").await;

    // Deletion: held while a volume exists, then forced.
    h.create_driver_pv("pv-1").await;
    h.drivers().delete(DRIVER, &DeleteParams::default()).await.expect("delete");
    h.wait_condition(DRIVER, "DeletionBlocked", "True").await;
    h.force_delete(DRIVER).await;
    h.wait_driver_gone(DRIVER).await;
    assert!(election.release_within(Duration::from_secs(2)).await, "the lease is released");

    // No exemption. The harness runs the OwnerReferencesPermissionEnforcement admission plugin:
    // the metrics Service's owner reference sets no blockOwnerDeletion, so no grant on the
    // driver's finalizers is needed (and none is held).
    let listed: Vec<String> = h.server.unused_grants(&operator_user()).iter().map(ToString::to_string).collect();
    assert!(listed.is_empty(), "grants no part of the operator used:\n{}", listed.join("\n"));
    h.stop().await;
}

/// A pull Secret the installation does not name (chart value `pullSecretCheck.secretNames`) is
/// refused to the operator by RBAC: the condition says so, with the value to set, and nothing is
/// read by any other way.
#[tokio::test]
async fn a_pull_secret_the_installation_does_not_name_is_reported_with_the_chart_value() {
    let h = Harness::start(1).await;
    let mut s = spec();
    s["images"]["pullSecrets"] = json!([super::support::PULL_SECRET, "unlisted"]);
    h.create_driver(DRIVER, s).await;
    let c = h.wait_condition(DRIVER, "PullSecretsPresent", "Unknown").await;
    assert_eq!(c["reason"], json!("CannotCheck"), "{c}");
    let msg = c["message"].as_str().unwrap_or_default();
    assert!(msg.contains("kube-system/unlisted") && msg.contains("pullSecretCheck.secretNames"), "{msg}");
    // Every refusal the operator met was for that Secret, and only reads.
    let denied = h.server.denied_requests(&operator_user());
    assert!(!denied.is_empty(), "RBAC refused the read");
    assert!(
        denied.iter().all(|a| a.resource == "secrets"
            && a.name == "unlisted"
            && ["get", "list", "watch"].contains(&a.verb.as_str())),
        "{denied:#?}"
    );
    // The name fixed in the spec: checked again, and no refusal after it.
    h.patch_spec(DRIVER, json!({"images": {"pullSecrets": [super::support::PULL_SECRET]}})).await;
    h.wait_condition(DRIVER, "PullSecretsPresent", "True").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.server.reset_access_log();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    h.stop().await;
}

/// A CA-bundle ConfigMap the installation does not name (chart value `aws.caBundleConfigMaps`) is
/// refused to the operator by RBAC: the AWS client is not built and the error (what `status.aws`
/// reports) says which value to set; the named one is read, and only `get` on that name is ever
/// attempted.
#[tokio::test]
async fn a_ca_bundle_the_installation_does_not_name_is_reported_with_the_chart_value() {
    let h = Harness::start(1).await;
    let pem = h.server.ca_certificate_pem().expect("the server's CA");
    super::support::create_ca_bundle_named(&h.client, super::support::CA_BUNDLE, &pem).await;
    super::support::create_ca_bundle_named(&h.client, "corporate-ca", &pem).await;
    let factory = aws_factory(&h.operator);
    let mut s = spec();
    s["aws"]["caBundle"] = json!({"name": "corporate-ca"});
    let err = match factory.build(&typed(&s)).await {
        Ok(_) => panic!("RBAC must refuse ConfigMap kube-system/corporate-ca"),
        Err(e) => e,
    };
    assert_eq!((err.operation.as_str(), err.code.as_str()), ("ReadCaBundle", "Forbidden"), "{err:?}");
    for part in ["kube-system/corporate-ca", "aws.caBundleConfigMaps", "spec.aws.caBundle.name"] {
        assert!(err.message.contains(part), "{part} missing from: {}", err.message);
    }
    let denied = h.server.denied_requests(&operator_user());
    assert!(
        !denied.is_empty()
            && denied.iter().all(|a| a.resource == "configmaps" && a.name == "corporate-ca" && a.verb == "get"),
        "{denied:#?}"
    );
    // The named ConfigMap: read, and the client builds with its bundle.
    h.server.reset_access_log();
    s["aws"]["caBundle"] = json!({"name": super::support::CA_BUNDLE});
    let built = factory.build(&typed(&s)).await;
    assert!(built.is_ok(), "the AWS client with the named CA bundle: {:?}", built.err());
    let log = h.server.access_log(&operator_user());
    assert!(
        log.iter().any(|a| a.resource == "configmaps" && a.name == super::support::CA_BUNDLE && a.verb == "get"),
        "{log:#?}"
    );
    // A ConfigMap granted by name but absent is reported as missing, not as a permission problem.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(h.client.clone(), DRIVER_NAMESPACE);
    cms.delete(super::support::CA_BUNDLE, &DeleteParams::default()).await.expect("delete");
    let err = factory.build(&typed(&s)).await.err().expect("no ConfigMap, no client");
    assert_eq!(err.code, "NotFound", "{err:?}");
    h.stop().await;
}

//! The KMS preflight: every key the StorageClasses encrypt with, probed once per refresh as the
//! driver's identity (DescribeKey, then DryRun GenerateDataKey*, CreateGrant, Encrypt, Decrypt,
//! ReEncrypt*). The fake answers DryRunOperationException as KMS does; moto resolves keys and
//! aliases for real but performs DryRun calls, which must stop the probes after the canary.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use hardened_csi_operator::aws::inventory::{self, RefreshParams};
use hardened_csi_operator::aws::preflight::{self, KmsUse};
use hardened_csi_operator::aws::sdk::{AwsSettings, SdkAws};
use hardened_csi_operator::commands::doctor::{self, DoctorArgs, OutputFormat, run_doctor_with};
use hardened_csi_operator::crd::{KmsKeyReport, StorageClassSpec};
use hardened_csi_operator::reconciler::conditions::aws_conditions as conditions;
use hardened_csi_operator::runtime::metrics::Metrics;
use local_apiserver::LocalApiServer;

use crate::fake::{self, Fake};
use crate::irsa::{api_for_spec, create_service_account, irsa_spec};
use crate::moto::{self, Moto};
use crate::sdk_on;

const CROSS: &str = "arn:aws:kms:us-east-1:210987654321:key/cross";
const OTHER_REGION: &str = "arn:aws:kms:eu-west-1:123456789012:key/eu";

fn class(name: &str, key: Option<&str>) -> StorageClassSpec {
    StorageClassSpec { name: name.into(), kms_key_id: key.map(str::to_string), ..StorageClassSpec::default() }
}

fn key<'a>(keys: &'a [KmsKeyReport], named: &str) -> &'a KmsKeyReport {
    keys.iter().find(|k| k.key == named).unwrap_or_else(|| panic!("no kmsKeys entry {named}: {keys:#?}"))
}

fn kms_ops(fake: &Fake) -> Vec<String> {
    const KMS: [&str; 6] =
        ["DescribeKey", "GenerateDataKeyWithoutPlaintext", "CreateGrant", "Encrypt", "Decrypt", "ReEncrypt"];
    fake.requests().into_iter().filter(|r| KMS.contains(&r.action.as_str())).map(|r| r.action).collect()
}

#[tokio::test]
async fn every_storage_class_key_is_probed_once_as_the_driver_and_each_verdict_is_per_action() {
    let server = LocalApiServer::start().await.expect("local API server");
    create_service_account(&server).await;
    let mut spec = irsa_spec();
    spec.storage_classes = vec![
        class("gp3", None),
        class("fast", Some("alias/ebs-prod")),
        class("bulk", Some("alias/ebs-prod")),
        class("shared", Some(CROSS)),
        class("europe", Some(OTHER_REGION)),
        class("gone", Some("alias/gone")),
        class("off", Some("alias/off")),
        class("nogrant", Some("alias/no-grant")),
    ];
    let prod = fake::kms_arn("alias/ebs-prod");
    let no_grant = fake::kms_arn("alias/no-grant");
    let fake = Arc::new(Fake {
        kms_deny: vec![
            ("Encrypt".into(), "cross".into(), fake::kms_key_policy_denial("Encrypt", CROSS)),
            ("CreateGrant".into(), "cross".into(), fake::kms_identity_denial("CreateGrant", CROSS)),
            (
                "GenerateDataKeyWithoutPlaintext".into(),
                "no-grant".into(),
                fake::kms_identity_denial("GenerateDataKeyWithoutPlaintext", &no_grant),
            ),
        ],
        kms_missing: HashSet::from(["alias/gone".to_string()]),
        kms_state: [("off".to_string(), "Disabled".to_string())].into(),
        ..Fake::new(6, 2)
    });
    let metrics = Arc::new(Metrics::new());
    let api = api_for_spec(&server, &fake, &metrics, &spec).await;
    let params = RefreshParams::from_spec(&spec);
    assert_eq!(params.kms.keys["alias/ebs-prod"], ["fast", "bulk"]);
    assert_eq!(params.kms.default_key_classes, ["gp3"]);

    let status = inventory::refresh(&api, &params, None, None, jiff::Timestamp::now()).await;

    assert!(!status.stale, "{:?}", status.last_error_message);
    let p = &status.permissions;
    // One DescribeKey per distinct key but the other region's (refused without a call) and the
    // AWS managed default key (usable through EC2 only: never probed directly); the five DryRun
    // probes per usable customer key, CreateGrant only after the canary answered DryRunOperation.
    let ops = kms_ops(&fake);
    assert_eq!(ops.iter().filter(|o| *o == "DescribeKey").count(), 5, "{ops:?}");
    let probes = |arn: &str| {
        fake.requests()
            .into_iter()
            .filter(|r| r.action != "DescribeKey" && r.params.values().any(|v| v == arn))
            .map(|r| r.action)
            .collect::<Vec<_>>()
    };
    let all = ["GenerateDataKeyWithoutPlaintext", "CreateGrant", "Encrypt", "Decrypt", "ReEncrypt"];
    assert_eq!(probes(&prod), all);
    assert_eq!(probes(CROSS), all);
    assert_eq!(probes(&no_grant), ["GenerateDataKeyWithoutPlaintext", "Encrypt", "Decrypt", "ReEncrypt"]);
    assert_eq!(ops.len(), 5 + 5 + 5 + 4, "{ops:?}");
    assert!(!fake.requests().iter().any(|r| r.params.values().any(|v| v.contains("eu-west-1"))));
    for r in fake.requests().iter().filter(|r| r.host.starts_with("kms.")) {
        assert!(
            r.authorization.contains(&format!("Credential={}/", fake::ASSUMED_KEY)),
            "{} is signed as the driver's IRSA role: {}",
            r.action,
            r.authorization
        );
        if r.action != "DescribeKey" {
            assert_eq!(r.params.get("DryRun").map(String::as_str), Some("true"), "{r:?}");
        }
    }
    let grant = fake.requests().into_iter().find(|r| r.action == "CreateGrant").expect("a CreateGrant probe");
    assert_eq!(grant.params.get("GranteePrincipal").map(String::as_str), Some(fake::ASSUMED_ARN));

    // Per action and key.
    for action in ["kms:DescribeKey", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:Encrypt", "kms:Decrypt"] {
        assert!(p.checked.contains(&format!("{action} on {prod}")), "{action}: {:?}", p.checked);
    }
    assert_eq!(p.missing, [format!("kms:GenerateDataKey* on {no_grant}")], "{p:#?}");
    let unverified: BTreeMap<&str, &str> =
        p.unverified.iter().map(|u| (u.action.as_str(), u.reason.as_str())).collect();
    let encrypt = unverified[format!("kms:Encrypt on {CROSS}").as_str()];
    assert!(encrypt.contains("key policy denied") && encrypt.contains("resource-based"), "{encrypt}");
    let grant = unverified[format!("kms:CreateGrant on {CROSS}").as_str()];
    assert!(grant.contains("kms:GrantIsForAWSResource"), "{grant}");
    let skipped = unverified[format!("kms:CreateGrant on {no_grant}").as_str()];
    assert!(skipped.contains("canary"), "{skipped}");
    assert!(!unverified.keys().any(|a| a.contains(&prod)), "{unverified:?}");

    let shared = key(&p.kms_keys, CROSS);
    assert!(shared.cross_account && shared.problem.is_none(), "{shared:?}");
    assert_eq!(shared.denied_by_key_policy, ["kms:Encrypt"]);
    let ebs_prod = key(&p.kms_keys, "alias/ebs-prod");
    assert_eq!((ebs_prod.arn.as_deref(), ebs_prod.state.as_deref()), (Some(prod.as_str()), Some("Enabled")));
    assert_eq!(ebs_prod.storage_classes, ["fast", "bulk"]);
    assert!(!ebs_prod.cross_account);
    let default = key(&p.kms_keys, "alias/aws/ebs");
    assert!(default.account_default && default.manager.as_deref() == Some("AWS"), "{default:?}");
    assert_eq!(default.storage_classes, ["gp3"]);
    let europe = key(&p.kms_keys, OTHER_REGION).problem.as_deref().unwrap_or_default();
    assert!(europe.contains("region eu-west-1") && europe.contains("us-east-1"), "{europe}");
    let gone = key(&p.kms_keys, "alias/gone").problem.as_deref().unwrap_or_default();
    assert!(gone.contains("NotFoundException"), "{gone}");
    let off = key(&p.kms_keys, "alias/off");
    assert_eq!(off.state.as_deref(), Some("Disabled"));
    assert!(off.problem.as_deref().unwrap_or_default().contains("Disabled"), "{off:?}");

    let c = conditions(&status);
    let perm = c.iter().find(|c| c.type_ == "AwsPermissions").expect("AwsPermissions");
    assert_eq!((perm.status, perm.reason.as_str()), ("False", "MissingPermissions"), "{perm:?}");
    assert!(perm.message.contains("upstream's example KMS policy"), "{}", perm.message);
}

#[tokio::test]
async fn a_kms_key_problem_alone_makes_the_permissions_false_and_a_clean_key_all_granted() {
    let metrics = Arc::new(Metrics::new());
    let fake = Arc::new(Fake::new(2, 1));
    // spec.aws.kmsEndpoint: the operator's KMS calls, and only those, go there.
    let settings = AwsSettings {
        kms_endpoint: Some("https://kms.vpce-0abc.example.com".into()),
        ..crate::sdk_settings(&fake, &metrics)
    };
    let api = SdkAws::new(settings).await.expect("SDK client builds");
    let kms = KmsUse { keys: [("alias/ebs-prod".to_string(), vec!["fast".to_string()])].into(), ..KmsUse::default() };
    let params = RefreshParams { kms, ..RefreshParams::default() };
    let status = inventory::refresh(&api, &params, None, None, jiff::Timestamp::now()).await;
    let perm = conditions(&status).into_iter().find(|c| c.type_ == "AwsPermissions").expect("AwsPermissions");
    assert_eq!((perm.status, perm.reason.as_str()), ("True", "AllGranted"), "{perm:?}");
    assert!(perm.message.contains("6 KMS actions"), "{}", perm.message);
    // Requests: the EC2 preflight's plus one DescribeKey and five probes for the key.
    assert_eq!(kms_ops(&fake).len(), preflight::kms_requests_per_key());
    for r in fake.requests() {
        let kms = kms_ops(&fake).contains(&r.action);
        assert_eq!(r.host == "kms.vpce-0abc.example.com", kms, "{} went to {}", r.action, r.host);
    }

    let fake = Arc::new(Fake {
        kms_state: [("ebs-prod".to_string(), "PendingDeletion".to_string())].into(),
        ..Fake::new(2, 1)
    });
    let api = sdk_on(&fake, &metrics).await;
    let status = inventory::refresh(&api, &params, None, None, jiff::Timestamp::now()).await;
    let perm = conditions(&status).into_iter().find(|c| c.type_ == "AwsPermissions").expect("AwsPermissions");
    assert_eq!((perm.status, perm.reason.as_str()), ("False", "KmsKeyUnusable"), "{perm:?}");
    assert!(perm.message.contains("PendingDeletion") && perm.message.contains("fast"), "{}", perm.message);
    assert_eq!(kms_ops(&fake), ["DescribeKey"], "no probe on a key EBS cannot use");
}

#[tokio::test]
async fn a_kms_endpoint_that_performs_the_dry_run_canary_stops_before_create_grant() {
    let metrics = Arc::new(Metrics::new());
    let fake = Arc::new(Fake {
        ignore_dry_run: HashSet::from(["GenerateDataKeyWithoutPlaintext".to_string()]),
        ..Fake::new(2, 1)
    });
    let api = sdk_on(&fake, &metrics).await;
    let kms = KmsUse { keys: [("alias/ebs-prod".to_string(), vec!["fast".to_string()])].into(), ..KmsUse::default() };
    let status = inventory::refresh(
        &api,
        &RefreshParams { kms, ..RefreshParams::default() },
        None,
        None,
        jiff::Timestamp::now(),
    )
    .await;
    assert_eq!(kms_ops(&fake), ["DescribeKey", "GenerateDataKeyWithoutPlaintext"]);
    let stopped = status.permissions.probes_stopped.as_deref().unwrap_or_default();
    assert!(stopped.contains("KMS endpoint performed GenerateDataKeyWithoutPlaintext"), "{stopped}");
    let perm = conditions(&status).into_iter().find(|c| c.type_ == "AwsPermissions").expect("AwsPermissions");
    assert_eq!((perm.status, perm.reason.as_str()), ("Unknown", "ProbesStopped"), "{perm:?}");
}

#[tokio::test]
async fn moto_resolves_keys_and_aliases_and_no_grant_is_left_behind() {
    let moto = Moto::start().await;
    let kms = moto.kms().await;
    let made = kms.create_key().description("ebs").send().await.expect("key created");
    let meta = made.key_metadata.expect("metadata");
    let (key_id, key_arn) = (meta.key_id.clone(), meta.arn.clone().expect("arn"));
    kms.create_alias().alias_name("alias/ebs-prod").target_key_id(&key_id).send().await.expect("alias");
    let off = kms.create_key().send().await.expect("key").key_metadata.expect("metadata").key_id;
    kms.disable_key().key_id(&off).send().await.expect("disabled");

    let metrics = Arc::new(Metrics::new());
    let api = SdkAws::new(moto.settings(metrics.clone())).await.expect("SDK");
    let mut keys = BTreeMap::new();
    keys.insert("alias/ebs-prod".to_string(), vec!["fast".to_string()]);
    keys.insert("alias/missing".to_string(), vec!["gone".to_string()]);
    keys.insert(off.clone(), vec!["off".to_string()]);
    let params = RefreshParams { kms: KmsUse { keys, ..KmsUse::default() }, ..RefreshParams::default() };
    let status = inventory::refresh(&api, &params, None, None, jiff::Timestamp::now()).await;

    assert!(!status.stale, "{:?}", status.last_error_message);
    let p = &status.permissions;
    let prod = key(&p.kms_keys, "alias/ebs-prod");
    assert_eq!(prod.arn.as_deref(), Some(key_arn.as_str()), "the alias resolves to the key ARN");
    assert_eq!((prod.state.as_deref(), prod.manager.as_deref()), (Some("Enabled"), Some("CUSTOMER")));
    assert!(key(&p.kms_keys, "alias/missing").problem.as_deref().unwrap_or_default().contains("NotFoundException"));
    assert!(key(&p.kms_keys, &off).problem.as_deref().unwrap_or_default().contains("Disabled"));
    // moto performs KMS calls despite DryRun: the canary is performed (it changes nothing), and
    // CreateGrant is never sent, so moto holds no grant.
    let stopped = p.probes_stopped.as_deref().unwrap_or_default();
    assert!(stopped.contains("GenerateDataKeyWithoutPlaintext"), "{p:#?}");
    let grants = kms.list_grants().key_id(&key_id).send().await.expect("grants");
    assert!(grants.grants().is_empty(), "{:?}", grants.grants());

    // doctor, as a user runs it, with the same keys.
    let args = DoctorArgs {
        region: Some(moto::REGION.into()),
        endpoint_url: Some(moto.url.clone()),
        kms_key_ids: vec!["alias/ebs-prod".into(), off.clone(), "default".into()],
        output: OutputFormat::Text,
        ..DoctorArgs::default()
    };
    let mut out = Vec::new();
    let code = run_doctor_with(args, moto::static_credentials(), None, &mut out).await.expect("doctor runs");
    let text = String::from_utf8(out).expect("UTF-8");
    assert_eq!(code, doctor::EXIT_MISSING_PERMISSIONS, "a disabled key fails the check: {text}");
    assert!(text.contains(&format!("{key_arn} (named alias/ebs-prod) Enabled customer managed")), "{text}");
    assert!(text.contains("UNUSABLE: the key is Disabled"), "{text}");
    // moto answers 500 for GetEbsDefaultKmsKeyId: the default key is reported unknown, not guessed.
    assert!(text.contains("kms:* on the account's default EBS key"), "{text}");
    assert!(text.contains("UNUSABLE KMS KEY"), "{text}");
}

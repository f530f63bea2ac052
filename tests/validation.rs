//! One validation, two enforcers: every bad input below is refused by the Rust validation (what
//! `render` and the `SpecValid` condition report) with its field path, and by the local API
//! server at admission (the CRD's schema and CEL rules, evaluated as a real server does) with the
//! same field and, for every CEL rule, the same message. The CRD's rules are enumerated from the
//! generated schema and each must be exercised here. Good inputs pass both.

use std::collections::BTreeSet;

use hardened_csi_operator::crd::validate::{
    CEL_RULES, CelRule, FieldErrors, TRANSITION_RULES, rules, transition_rules,
};
use hardened_csi_operator::crd::{HardenedCsiDriver, parse};
use hardened_csi_operator::render::{self, Capabilities};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use local_apiserver::LocalApiServer;
use serde_json::{Value, json};

/// One refused input: the spec (or a name), then where and how each side refuses it.
struct Bad {
    name: String,
    spec: Value,
    rust_field: String,
    server_field: &'static str,
    /// Text both messages contain (a CEL rule's message), or (Rust text, server text).
    says: Says,
}

enum Says {
    Rule(CelRule),
    Each(&'static str, &'static str),
}

fn bad(spec: Value, rust_field: &str, server_field: &'static str, says: Says) -> Bad {
    Bad { name: "ebs".into(), spec, rust_field: rust_field.into(), server_field, says }
}

fn rule(r: CelRule) -> Says {
    Says::Rule(r)
}

fn cases() -> Vec<Bad> {
    use Says::Each;
    let long = |n: usize| "a".repeat(n);
    let many_tags: serde_json::Map<String, Value> = (0..41).map(|i| (format!("t{i}"), json!("v"))).collect();
    vec![
        Bad { name: long(70), ..bad(json!({}), "metadata.name", "<nil>", rule(rules::NAME_LENGTH)) },
        bad(
            json!({"images": {"pullSecrets": ["Bad_Name"]}}),
            "spec.images.pullSecrets[0]",
            "spec.images.pullSecrets",
            rule(rules::PULL_SECRET_NAMES),
        ),
        bad(json!({"aws": {"identity": {}}}), "spec.aws.identity", "spec.aws.identity", rule(rules::IDENTITY_ONE_OF)),
        bad(
            json!({"aws": {"identity": {"podIdentity": {}, "secretRef": {"name": "x"}}}}),
            "spec.aws.identity",
            "spec.aws.identity",
            rule(rules::IDENTITY_ONE_OF),
        ),
        bad(
            json!({"aws": {"extraTags": {"kubernetes.io/cluster/x": "owned"}}}),
            "spec.aws.extraTags[kubernetes.io/cluster/x]",
            "spec.aws.extraTags",
            rule(rules::TAGS_RESERVED),
        ),
        bad(
            json!({"aws": {"extraTags": {"CSIVolumeName": "x"}}}),
            "spec.aws.extraTags[CSIVolumeName]",
            "spec.aws.extraTags",
            rule(rules::TAGS_RESERVED),
        ),
        // The injection: a comma in a key smuggles a reserved tag past the reserved-key check.
        bad(
            json!({"aws": {"extraTags": {"team,kubernetes.io/cluster/x": "owned"}}}),
            "spec.aws.extraTags[team,kubernetes.io/cluster/x]",
            "spec.aws.extraTags",
            rule(rules::TAG_KEYS),
        ),
        bad(
            json!({"aws": {"extraTags": {"a=b": "c"}}}),
            "spec.aws.extraTags[a=b]",
            "spec.aws.extraTags",
            rule(rules::TAG_KEYS),
        ),
        bad(
            json!({"aws": {"extraTags": {"AWS:owner": "x"}}}),
            "spec.aws.extraTags[AWS:owner]",
            "spec.aws.extraTags",
            rule(rules::TAG_KEYS),
        ),
        bad(
            json!({"aws": {"extraTags": {" team": "x"}}}),
            "spec.aws.extraTags[ team]",
            "spec.aws.extraTags",
            rule(rules::TAG_KEYS),
        ),
        bad(
            json!({"aws": {"extraTags": {"$(AWS_SECRET_ACCESS_KEY)": "x"}}}),
            "spec.aws.extraTags[$(AWS_SECRET_ACCESS_KEY)]",
            "spec.aws.extraTags",
            rule(rules::TAG_KEYS),
        ),
        bad(
            json!({"aws": {"extraTags": {long(129): "x"}}}),
            &format!("spec.aws.extraTags[{}]", long(129)),
            "spec.aws.extraTags",
            rule(rules::TAG_KEYS),
        ),
        bad(
            json!({"aws": {"extraTags": {"team": "a,b=c"}}}),
            "spec.aws.extraTags[team]",
            "spec.aws.extraTags",
            rule(rules::TAG_VALUES),
        ),
        bad(
            json!({"aws": {"extraTags": {"team": "x "}}}),
            "spec.aws.extraTags[team]",
            "spec.aws.extraTags",
            rule(rules::TAG_VALUES),
        ),
        bad(
            json!({"aws": {"extraTags": {"team": long(257)}}}),
            "spec.aws.extraTags[team]",
            "spec.aws.extraTags[team]",
            Each("Too long: may not be more than 256 bytes", "Too long: may not be more than 256 bytes"),
        ),
        bad(
            json!({"aws": {"extraTags": many_tags}}),
            "spec.aws.extraTags",
            "spec.aws.extraTags",
            Each("Too many: 41: must have at most 40 items", "Too many: 41: must have at most 40 items"),
        ),
        bad(
            json!({"aws": {"ec2Endpoint": "https://$(AWS_SECRET_ACCESS_KEY).example.com"}}),
            "spec.aws.ec2Endpoint",
            "spec.aws.ec2Endpoint",
            rule(rules::EC2_ENDPOINT),
        ),
        bad(
            json!({"aws": {"ec2Endpoint": "ftp://ec2.example.com"}}),
            "spec.aws.ec2Endpoint",
            "spec.aws.ec2Endpoint",
            rule(rules::EC2_ENDPOINT),
        ),
        bad(
            json!({"aws": {"ec2Endpoint": format!("https://{}", long(2050))}}),
            "spec.aws.ec2Endpoint",
            "spec.aws.ec2Endpoint",
            Each("Too long: may not be more than 2048 bytes", "may not be more than 2048"),
        ),
        bad(
            json!({"aws": {"clusterId": long(101)}}),
            "spec.aws.clusterId",
            "spec.aws.clusterId",
            Each("must be 1-100", "may not be more than 100"),
        ),
        bad(
            json!({"aws": {"clusterId": "a b"}}),
            "spec.aws.clusterId",
            "spec.aws.clusterId",
            Each("must be 1-100", "should match"),
        ),
        bad(
            json!({"aws": {"region": "nowhere"}}),
            "spec.aws.region",
            "spec.aws.region",
            Each("not an AWS region", "should match"),
        ),
        bad(
            json!({"controller": {"extraArgs": ["bad"]}}),
            "spec.controller.extraArgs[0]",
            "spec.controller.extraArgs",
            rule(rules::EXTRA_ARGS_FORM),
        ),
        bad(
            json!({"controller": {"extraArgs": ["--ok=1", "--two\nlines"]}}),
            "spec.controller.extraArgs[1]",
            "spec.controller.extraArgs",
            rule(rules::EXTRA_ARGS_FORM),
        ),
        bad(
            json!({"controller": {"extraArgs": ["--k8s-tag-cluster-id=x"]}}),
            "spec.controller.extraArgs[0]",
            "spec.controller.extraArgs",
            rule(rules::EXTRA_ARGS_MANAGED),
        ),
        bad(
            json!({"controller": {"extraArgs": ["-v=9"]}}),
            "spec.controller.extraArgs[0]",
            "spec.controller.extraArgs",
            rule(rules::EXTRA_ARGS_MANAGED),
        ),
        bad(
            json!({"controller": {"extraArgs": ["--extra-tags"]}}),
            "spec.controller.extraArgs[0]",
            "spec.controller.extraArgs",
            rule(rules::EXTRA_ARGS_MANAGED),
        ),
        bad(
            json!({"controller": {"extraArgs": ["-endpoint=unix:///tmp/x"]}}),
            "spec.controller.extraArgs[0]",
            "spec.controller.extraArgs",
            rule(rules::EXTRA_ARGS_MANAGED),
        ),
        bad(
            json!({"controller": {"extraArgs": vec!["--a"; 33]}}),
            "spec.controller.extraArgs",
            "spec.controller.extraArgs",
            Each("Too many: 33: must have at most 32 items", "Too many: 33"),
        ),
        bad(
            json!({"controller": {"replicas": 11}}),
            "spec.controller.replicas",
            "spec.controller.replicas",
            Each("out of range: 1 to 10", "should be less than or equal to 10"),
        ),
        bad(
            json!({"aws": {"retagExistingVolumes": true, "extraTags": {"team": "storage"}}}),
            "spec.aws.retagExistingVolumes",
            "spec.aws",
            rule(rules::RETAG_CLUSTER_ID),
        ),
        bad(
            json!({"aws": {"retagExistingVolumes": true, "clusterId": "prod",
                "identity": {"secretRef": {"name": "k"}}}}),
            "spec.aws.retagExistingVolumes",
            "spec.aws",
            rule(rules::RETAG_IDENTITY),
        ),
        bad(
            json!({"aws": {"retagExistingVolumes": true, "clusterId": "prod"}, "inventory": {"enabled": false}}),
            "spec.aws.retagExistingVolumes",
            "spec",
            rule(rules::RETAG_INVENTORY),
        ),
        bad(
            json!({"aws": {"retagExistingVolumes": "yes"}}),
            "spec.aws.retagExistingVolumes",
            "spec.aws.retagExistingVolumes",
            Each("expected a boolean", "must be of type boolean"),
        ),
        bad(
            json!({"snapshots": {"controller": {"enabled": true, "replicas": 6}}}),
            "spec.snapshots.controller.replicas",
            "spec.snapshots.controller.replicas",
            Each("out of range: 1 to 5", "should be less than or equal to 5"),
        ),
        bad(
            json!({"snapshots": {"controller": {"replicas": 0}}}),
            "spec.snapshots.controller.replicas",
            "spec.snapshots.controller.replicas",
            Each("out of range: 1 to 5", "should be greater than or equal to 1"),
        ),
        bad(
            json!({"snapshots": {"controller": {"logLevel": 11}}}),
            "spec.snapshots.controller.logLevel",
            "spec.snapshots.controller.logLevel",
            Each("out of range: 0 to 10", "should be less than or equal to 10"),
        ),
        bad(
            json!({"controller": {"priorityClassName": "Bad_PC"}}),
            "spec.controller.priorityClassName",
            "spec.controller.priorityClassName",
            Each("not a valid PriorityClass name", "should match"),
        ),
        bad(
            json!({"node": {"volumeAttachLimit": 20, "reservedVolumeAttachments": 2}}),
            "spec.node",
            "spec.node",
            rule(rules::ATTACH_EXCLUSIVE),
        ),
        bad(
            json!({"node": {"kubeletPath": "/"}}),
            "spec.node.kubeletPath",
            "spec.node.kubeletPath",
            rule(rules::KUBELET_PATH_FORM),
        ),
        bad(
            json!({"node": {"kubeletPath": "/var/lib/kubelet/"}}),
            "spec.node.kubeletPath",
            "spec.node.kubeletPath",
            rule(rules::KUBELET_PATH_FORM),
        ),
        bad(
            json!({"node": {"kubeletPath": "//var/lib/kubelet"}}),
            "spec.node.kubeletPath",
            "spec.node.kubeletPath",
            rule(rules::KUBELET_PATH_FORM),
        ),
        bad(
            json!({"node": {"kubeletPath": "/var/lib/../../etc"}}),
            "spec.node.kubeletPath",
            "spec.node.kubeletPath",
            rule(rules::KUBELET_PATH_FORM),
        ),
        bad(
            json!({"node": {"kubeletPath": "var/lib/kubelet"}}),
            "spec.node.kubeletPath",
            "spec.node.kubeletPath",
            rule(rules::KUBELET_PATH_FORM),
        ),
        bad(
            json!({"node": {"kubeletPath": "/etc"}}),
            "spec.node.kubeletPath",
            "spec.node.kubeletPath",
            rule(rules::KUBELET_PATH_SYSTEM),
        ),
        bad(
            json!({"node": {"kubeletPath": "/etc/kubernetes/kubelet"}}),
            "spec.node.kubeletPath",
            "spec.node.kubeletPath",
            rule(rules::KUBELET_PATH_SYSTEM),
        ),
        bad(
            json!({"node": {"kubeletPath": "/var"}}),
            "spec.node.kubeletPath",
            "spec.node.kubeletPath",
            rule(rules::KUBELET_PATH_SYSTEM),
        ),
        bad(
            json!({"node": {"kubeletPath": "/root"}}),
            "spec.node.kubeletPath",
            "spec.node.kubeletPath",
            rule(rules::KUBELET_PATH_SYSTEM),
        ),
        bad(
            json!({"node": {"kubeletPath": format!("/{}", long(300))}}),
            "spec.node.kubeletPath",
            "spec.node.kubeletPath",
            Each("Too long: may not be more than 256 bytes", "may not be more than 256"),
        ),
        bad(
            json!({"node": {"maxUnavailable": 0}}),
            "spec.node.maxUnavailable",
            "spec.node.maxUnavailable",
            rule(rules::MAX_UNAVAILABLE),
        ),
        bad(
            json!({"node": {"maxUnavailable": "0%"}}),
            "spec.node.maxUnavailable",
            "spec.node.maxUnavailable",
            rule(rules::MAX_UNAVAILABLE),
        ),
        bad(
            json!({"node": {"maxUnavailable": "3"}}),
            "spec.node.maxUnavailable",
            "spec.node.maxUnavailable",
            rule(rules::MAX_UNAVAILABLE),
        ),
        bad(
            json!({"node": {"maxUnavailable": "ten"}}),
            "spec.node.maxUnavailable",
            "spec.node.maxUnavailable",
            rule(rules::MAX_UNAVAILABLE),
        ),
        bad(
            json!({"node": {"tolerations": vec![json!({"operator": "Exists"}); 65]}}),
            "spec.node.tolerations",
            "spec.node.tolerations",
            Each("Too many: 65: must have at most 64 items", "Too many: 65"),
        ),
        bad(
            json!({"storageClasses": [{"name": "a", "default": true}, {"name": "b", "default": true}]}),
            "spec.storageClasses",
            "spec.storageClasses",
            rule(rules::STORAGE_CLASS_DEFAULT),
        ),
        bad(
            json!({"storageClasses": [{"name": "a"}, {"name": "a"}]}),
            "spec.storageClasses[1].name",
            "spec.storageClasses",
            rule(rules::STORAGE_CLASS_UNIQUE),
        ),
        bad(
            json!({"volumeSnapshotClasses": [{"name": "a", "default": true}, {"name": "b", "default": true}]}),
            "spec.volumeSnapshotClasses",
            "spec.volumeSnapshotClasses",
            rule(rules::SNAPSHOT_CLASS_DEFAULT),
        ),
        bad(
            json!({"volumeSnapshotClasses": [{"name": "a"}, {"name": "a"}]}),
            "spec.volumeSnapshotClasses[1].name",
            "spec.volumeSnapshotClasses",
            rule(rules::SNAPSHOT_CLASS_UNIQUE),
        ),
        bad(
            json!({"storageClasses": [{"name": "a", "type": "gp2", "iops": 3000}]}),
            "spec.storageClasses[0].iops",
            "spec.storageClasses[0]",
            rule(rules::IOPS_TYPE),
        ),
        bad(
            json!({"storageClasses": [{"name": "a", "type": "io2", "throughput": 300}]}),
            "spec.storageClasses[0].throughput",
            "spec.storageClasses[0]",
            rule(rules::THROUGHPUT_TYPE),
        ),
        bad(
            json!({"storageClasses": [{"name": "a", "encrypted": false, "kmsKeyId": "alias/ebs"}]}),
            "spec.storageClasses[0].kmsKeyId",
            "spec.storageClasses[0]",
            rule(rules::KMS_NEEDS_ENCRYPTION),
        ),
        bad(
            json!({"storageClasses": [{"name": "a", "mountOptions": [long(300)]}]}),
            "spec.storageClasses[0].mountOptions[0]",
            "spec.storageClasses[0].mountOptions[0]",
            Each("Too long: may not be more than 256 bytes", "may not be more than 256"),
        ),
        bad(
            json!({"images": {"driver": {"digest": "sha256:xyz"}}}),
            "spec.images.driver.digest",
            "spec.images.driver.digest",
            rule(rules::DIGEST),
        ),
        bad(
            json!({"images": {"registry": "https://dhi.io/"}}),
            "spec.images.registry",
            "spec.images.registry",
            Each("must be a registry host", "should match"),
        ),
        // The secret leak: the proxy URL would expand the static key from the container's env.
        bad(
            json!({"proxy": {"httpProxy": "http://u:$(AWS_SECRET_ACCESS_KEY)@proxy:3128"}}),
            "spec.proxy.httpProxy",
            "spec.proxy.httpProxy",
            rule(rules::HTTP_PROXY),
        ),
        bad(
            json!({"proxy": {"httpProxy": "socks5://proxy:1080"}}),
            "spec.proxy.httpProxy",
            "spec.proxy.httpProxy",
            rule(rules::HTTP_PROXY),
        ),
        bad(
            json!({"proxy": {"noProxy": "10.0.0.0/8, $(HOME)"}}),
            "spec.proxy.noProxy",
            "spec.proxy.noProxy",
            rule(rules::NO_PROXY),
        ),
        // The crash: this interval used to pass validation and panic the poller.
        bad(
            json!({"inventory": {"interval": "3000000000000000h"}}),
            "spec.inventory.interval",
            "spec.inventory.interval",
            Each("is not a duration like 30s, 5m or 1h30m", "should match"),
        ),
        // An empty duration fails the rule with its message: duration('') would fail to evaluate,
        // which a real server reports as an execution error and never ratchets on status writes.
        bad(
            json!({"inventory": {"interval": ""}}),
            "spec.inventory.interval",
            "spec.inventory.interval",
            Each("is not a duration like 30s, 5m or 1h30m", rules::INTERVAL.message),
        ),
        bad(
            json!({"inventory": {"stuckThreshold": ""}}),
            "spec.inventory.stuckThreshold",
            "spec.inventory.stuckThreshold",
            Each("is not a duration like 30s, 5m or 1h30m", rules::STUCK_THRESHOLD.message),
        ),
        bad(
            json!({"inventory": {"interval": "30s"}}),
            "spec.inventory.interval",
            "spec.inventory.interval",
            rule(rules::INTERVAL),
        ),
        bad(
            json!({"inventory": {"interval": "25h"}}),
            "spec.inventory.interval",
            "spec.inventory.interval",
            rule(rules::INTERVAL),
        ),
        bad(
            json!({"inventory": {"orphanGracePeriod": "8761h"}}),
            "spec.inventory.orphanGracePeriod",
            "spec.inventory.orphanGracePeriod",
            rule(rules::ORPHAN_GRACE),
        ),
        bad(
            json!({"inventory": {"stuckThreshold": "10s"}}),
            "spec.inventory.stuckThreshold",
            "spec.inventory.stuckThreshold",
            rule(rules::STUCK_THRESHOLD),
        ),
        bad(
            json!({"inventory": {"stuckThreshold": "169h"}}),
            "spec.inventory.stuckThreshold",
            "spec.inventory.stuckThreshold",
            rule(rules::STUCK_THRESHOLD),
        ),
        // Day-2 knobs (issue 17): sidecars, pods, node plugin.
        bad(
            json!({"controller": {"sidecars": {"provisioner": {"extraArgs": ["worker-threads=5"]}}}}),
            "spec.controller.sidecars.provisioner.extraArgs[0]",
            "spec.controller.sidecars.provisioner.extraArgs",
            rule(rules::SIDECAR_ARGS_FORM),
        ),
        bad(
            json!({"controller": {"sidecars": {"resizer": {"extraArgs": ["--timeout=2m", "--csi-address=/tmp/x"]}}}}),
            "spec.controller.sidecars.resizer.extraArgs[1]",
            "spec.controller.sidecars.resizer.extraArgs",
            rule(rules::SIDECAR_ARGS_MANAGED),
        ),
        bad(
            json!({"node": {"sidecars": {"nodeDriverRegistrar": {"extraArgs": ["--kubelet-registration-path=/x"]}}}}),
            "spec.node.sidecars.nodeDriverRegistrar.extraArgs[0]",
            "spec.node.sidecars.nodeDriverRegistrar.extraArgs",
            rule(rules::SIDECAR_ARGS_MANAGED),
        ),
        bad(
            json!({"controller": {"sidecars": {"attacher": {"logLevel": 11}}}}),
            "spec.controller.sidecars.attacher.logLevel",
            "spec.controller.sidecars.attacher.logLevel",
            Each("11 is out of range: 0 to 10", "should be less than or equal to 10"),
        ),
        bad(
            json!({"node": {"extraArgs": ["--metadata-sources=kubernetes", "-endpoint=unix:/tmp/x"]}}),
            "spec.node.extraArgs[1]",
            "spec.node.extraArgs",
            rule(rules::NODE_ARGS_MANAGED),
        ),
        bad(
            json!({"node": {"extraArgs": ["legacy-xfs"]}}),
            "spec.node.extraArgs[0]",
            "spec.node.extraArgs",
            rule(rules::EXTRA_ARGS_FORM),
        ),
        bad(
            json!({"controller": {"env": [{"name": "AWS_MAX_ATTEMPTS", "value": "5"}, {"name": "AWS_REGION",
                "value": "eu-west-1"}]}}),
            "spec.controller.env[1].name",
            "spec.controller.env",
            rule(rules::ENV_MANAGED),
        ),
        bad(
            json!({"node": {"env": [{"name": "HTTPS_PROXY", "value": "http://p:3128"}]}}),
            "spec.node.env[0].name",
            "spec.node.env",
            rule(rules::ENV_MANAGED),
        ),
        bad(
            json!({"node": {"dnsConfig": {"nameservers": ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]}}}),
            "spec.node.dnsConfig",
            "spec.node.dnsConfig",
            rule(rules::DNS_CONFIG),
        ),
        bad(
            json!({"controller": {"podLabels": {"app": "mine"}}}),
            "spec.controller.podLabels[app]",
            "spec.controller.podLabels",
            rule(rules::POD_LABELS_RESERVED),
        ),
        bad(
            json!({"node": {"podLabels": {"bad key": "x"}}}),
            "spec.node.podLabels[bad key]",
            "spec.node.podLabels",
            rule(rules::LABEL_KEYS),
        ),
        bad(
            json!({"controller": {"podLabels": {"team": "a b"}}}),
            "spec.controller.podLabels[team]",
            "spec.controller.podLabels",
            rule(rules::LABEL_VALUES),
        ),
        bad(
            json!({"node": {"podAnnotations": {"-bad": "x"}}}),
            "spec.node.podAnnotations[-bad]",
            "spec.node.podAnnotations",
            rule(rules::ANNOTATION_KEYS),
        ),
        bad(
            json!({"controller": {"podDisruptionBudget": {"maxUnavailable": 1, "minAvailable": 1}}}),
            "spec.controller.podDisruptionBudget",
            "spec.controller.podDisruptionBudget",
            rule(rules::PDB_EXCLUSIVE),
        ),
        bad(
            json!({"controller": {"podDisruptionBudget": {"minAvailable": "150%"}}}),
            "spec.controller.podDisruptionBudget.minAvailable",
            "spec.controller.podDisruptionBudget.minAvailable",
            rule(rules::PDB_VALUE),
        ),
        bad(
            json!({"controller": {"podDisruptionBudget": {"maxUnavailable": -1}}}),
            "spec.controller.podDisruptionBudget.maxUnavailable",
            "spec.controller.podDisruptionBudget.maxUnavailable",
            rule(rules::PDB_VALUE),
        ),
        bad(
            json!({"controller": {"loggingFormat": "yaml"}}),
            "spec.controller.loggingFormat",
            "spec.controller.loggingFormat",
            Each("unknown variant `yaml`, expected `text` or `json`", "supported values: \"text\", \"json\""),
        ),
        bad(
            json!({"node": {"terminationGracePeriodSeconds": 7200}}),
            "spec.node.terminationGracePeriodSeconds",
            "spec.node.terminationGracePeriodSeconds",
            Each("7200 is out of range: 0 to 3600", "should be less than or equal to 3600"),
        ),
        bad(
            json!({"storageClasses": [{"name": "gp3", "annotations": {"storageclass.kubernetes.io/is-default-class":
                "true"}}]}),
            "spec.storageClasses[0].annotations[storageclass.kubernetes.io/is-default-class]",
            "spec.storageClasses[0].annotations",
            rule(rules::CLASS_ANNOTATIONS),
        ),
        bad(
            json!({"volumeSnapshotClasses": [{"name": "s", "labels": {"app.kubernetes.io/managed-by": "me"}}]}),
            "spec.volumeSnapshotClasses[0].labels[app.kubernetes.io/managed-by]",
            "spec.volumeSnapshotClasses[0].labels",
            rule(rules::POD_LABELS_RESERVED),
        ),
        bad(
            json!({"metrics": {"enabled": true, "serviceMonitor": {"enabled": true, "interval": "15 seconds"}}}),
            "spec.metrics.serviceMonitor.interval",
            "spec.metrics.serviceMonitor.interval",
            rule(rules::SCRAPE_INTERVAL),
        ),
        bad(
            json!({"metrics": {"enabled": true, "serviceMonitor": {"enabled": true, "interval": "0s"}}}),
            "spec.metrics.serviceMonitor.interval",
            "spec.metrics.serviceMonitor.interval",
            rule(rules::SCRAPE_INTERVAL),
        ),
        bad(
            json!({"metrics": {"serviceMonitor": {"enabled": true}}}),
            "spec.metrics",
            "spec.metrics",
            rule(rules::SERVICE_MONITOR_METRICS),
        ),
        bad(
            json!({"metrics": {"enabled": true, "serviceMonitor": {"enabled": true, "labels": {"app": "x"}}}}),
            "spec.metrics.serviceMonitor.labels[app]",
            "spec.metrics.serviceMonitor.labels",
            rule(rules::POD_LABELS_RESERVED),
        ),
        bad(
            json!({"aws": {"stsEndpoint": "https://sts.example.com/$(AWS_SECRET_ACCESS_KEY)"}}),
            "spec.aws.stsEndpoint",
            "spec.aws.stsEndpoint",
            rule(rules::STS_ENDPOINT),
        ),
        bad(
            json!({"aws": {"kmsEndpoint": "kms.us-east-1.amazonaws.com"}}),
            "spec.aws.kmsEndpoint",
            "spec.aws.kmsEndpoint",
            rule(rules::KMS_ENDPOINT),
        ),
        bad(
            json!({"aws": {"identity": {"secretRef": {"name": "keys", "keyId": "key id"}}}}),
            "spec.aws.identity.secretRef.keyId",
            "spec.aws.identity.secretRef.keyId",
            Each("not a valid key", "should match"),
        ),
        bad(
            json!({"aws": {"caBundle": {"name": "Bad_Name"}}}),
            "spec.aws.caBundle.name",
            "spec.aws.caBundle.name",
            Each("not a valid ConfigMap name", "should match"),
        ),
        bad(
            json!({"version": "1.65.0"}),
            "spec.version",
            "spec.version",
            Each(
                "supported values: \"1.62.0\", \"1.63.1\", \"1.64.0\"",
                "supported values: \"1.62.0\", \"1.63.1\", \"1.64.0\"",
            ),
        ),
        bad(
            json!({"fips": true, "aws": {"region": "us-east-1"}, "images": {"driver": {"tag": "1.64.0"}}}),
            "spec.images.driver.tag",
            "spec",
            rule(rules::FIPS_IMAGES),
        ),
        bad(
            json!({"fips": true, "aws": {"region": "us-east-1"},
                "images": {"resizer": {"digest": format!("sha256:{}", "a".repeat(64))}}}),
            "spec.images.resizer.digest",
            "spec",
            rule(rules::FIPS_IMAGES),
        ),
        bad(
            json!({"storageClasses": [{"name": "gp3", "type": "gp3", "iops": 1000}]}),
            "spec.storageClasses[0].iops",
            "spec.storageClasses[0]",
            rule(rules::IOPS_RANGE),
        ),
        bad(
            json!({"storageClasses": [{"name": "io1", "type": "io1", "iops": 100000}]}),
            "spec.storageClasses[0].iops",
            "spec.storageClasses[0]",
            rule(rules::IOPS_RANGE),
        ),
        bad(
            json!({"volumeAttributesClasses": [{"name": "fast", "iops": 4000}, {"name": "fast", "iops": 5000}]}),
            "spec.volumeAttributesClasses[1].name",
            "spec.volumeAttributesClasses",
            rule(rules::VAC_UNIQUE),
        ),
        bad(
            json!({"volumeAttributesClasses": [{"name": "empty"}]}),
            "spec.volumeAttributesClasses[0]",
            "spec.volumeAttributesClasses[0]",
            rule(rules::VAC_NOT_EMPTY),
        ),
        bad(
            json!({"volumeAttributesClasses": [{"name": "slow", "type": "st1", "iops": 500}]}),
            "spec.volumeAttributesClasses[0].iops",
            "spec.volumeAttributesClasses[0]",
            rule(rules::VAC_IOPS_TYPE),
        ),
        bad(
            json!({"volumeAttributesClasses": [{"name": "fast", "type": "gp3", "iops": 90000}]}),
            "spec.volumeAttributesClasses[0].iops",
            "spec.volumeAttributesClasses[0]",
            rule(rules::VAC_IOPS_RANGE),
        ),
        bad(
            json!({"volumeAttributesClasses": [{"name": "fast", "type": "io2", "throughput": 500}]}),
            "spec.volumeAttributesClasses[0].throughput",
            "spec.volumeAttributesClasses[0]",
            rule(rules::VAC_THROUGHPUT_TYPE),
        ),
        bad(
            json!({"volumeAttributesClasses": [{"name": "fast", "type": "gp3", "throughput": 2500}]}),
            "spec.volumeAttributesClasses[0].throughput",
            "spec.volumeAttributesClasses[0].throughput",
            Each("2500 is out of range: 125 to 2000 MiB/s", "should be less than or equal to 2000"),
        ),
        bad(
            json!({"volumeAttributesClasses": [{"name": "t", "parameters": {"iops": "4000"}}]}),
            "spec.volumeAttributesClasses[0].parameters[iops]",
            "spec.volumeAttributesClasses[0].parameters",
            rule(rules::VAC_PARAMETERS),
        ),
        bad(
            json!({"volumeAttributesClasses": [{"name": "t", "parameters": {"tagSpecification_1": "no-equals"}}]}),
            "spec.volumeAttributesClasses[0].parameters[tagSpecification_1]",
            "spec.volumeAttributesClasses[0].parameters",
            rule(rules::VAC_PARAMETERS),
        ),
        bad(
            json!({"namespace": "Bad_NS"}),
            "spec.namespace",
            "spec.namespace",
            Each("not a valid namespace name", "should match"),
        ),
    ]
}

/// Specs both sides accept, near the edges of the rules above.
fn goods() -> Vec<Value> {
    vec![
        json!({}),
        json!({"metrics": {"enabled": true, "serviceMonitor": {"enabled": true, "interval": "1m30s",
            "labels": {"release": "prometheus"}}}}),
        json!({"metrics": {"serviceMonitor": {"enabled": false, "interval": "1h"}}}),
        json!({"node": {"kubeletPath": "/var/lib/k0s/kubelet"}}),
        json!({"node": {"kubeletPath": "/var/snap/microk8s/common/var/lib/kubelet", "maxUnavailable": 3}}),
        json!({"node": {"kubeletPath": "/var/lib/rancher/k3s/agent/kubelet", "maxUnavailable": "100%"}}),
        json!({"node": {"kubeletPath": "/data/kubelet.d/root_1"}}),
        json!({"aws": {"extraTags": {"team": "storage", "cost center": "a=b", "owner@example.com": "", "k:v/w+x": "."},
            "ec2Endpoint": "https://vpce-0a1b.ec2.us-east-1.vpce.amazonaws.com:443/"}}),
        json!({"proxy": {"httpProxy": "http://user:p%40ss@proxy.internal:3128", "noProxy":
            "169.254.169.254,10.0.0.0/8,.cluster.local,localhost"}}),
        json!({"controller": {"extraArgs": ["--aws-sdk-debug-log=true", "-warn-on-invalid-tag", "--vv=1",
            "--modify-volume-request-handler-timeout=2s"]}}),
        json!({"inventory": {"interval": "24h", "orphanGracePeriod": "8760h", "stuckThreshold": "1m"}}),
        json!({"inventory": {"interval": "1440m", "orphanGracePeriod": "60s", "stuckThreshold": "168h"}}),
        json!({"aws": {"clusterId": "a".repeat(100), "region": "us-gov-west-1"}}),
        json!({"version": "1.62.0"}),
        json!({"aws": {"retagExistingVolumes": true, "clusterId": "prod", "extraTags": {"team": "storage"},
            "identity": {"irsa": {"roleArn": "arn:aws:iam::111122223333:role/ebs-csi"}}}}),
        json!({"aws": {"retagExistingVolumes": false, "identity": {"secretRef": {"name": "k"}}}}),
        json!({"fips": true, "aws": {"region": "us-gov-west-1"}, "images": {"driver": {"tag": "1.64.0-debian13-fips"},
            "resizer": {"tag": "2.2.1-fips", "digest": format!("sha256:{}", "b".repeat(64))}}}),
        json!({"images": {"driver": {"digest": format!("sha256:{}", "c".repeat(64))}}}),
        json!({"storageClasses": [{"name": "gp3", "iops": 3000, "throughput": 2000},
            {"name": "io2", "type": "io2", "iops": 256000}, {"name": "io1", "type": "io1", "iops": 64000}]}),
        json!({"volumeAttributesClasses": [{"name": "fast", "type": "gp3", "iops": 80000, "throughput": 2000},
            {"name": "any-iops", "iops": 100}, {"name": "to-io2", "type": "io2", "iops": 256000},
            {"name": "tags", "parameters": {"tagSpecification_1": "team=storage", "tagDeletion_1": "old"},
            "labels": {"tier": "gold"}, "annotations": {"note": "x"}}]}),
        json!({"controller": {
            "sidecars": {"provisioner": {"extraArgs": ["--worker-threads=50", "--timeout=120s"], "logLevel": 5,
                "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}},
                "livenessProbe": {"extraArgs": ["--probe-timeout=30s"]}},
            "loggingFormat": "json", "podLabels": {"team": "storage", "example.com/tier": ""},
            "podAnnotations": {"ad.datadoghq.com/logs": "[{\"source\": \"ebs\"}]"},
            "env": [{"name": "AWS_MAX_ATTEMPTS", "value": "10"}, {"name": "SECRET",
                "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            "envFrom": [{"configMapRef": {"name": "driver-env"}}],
            "dnsConfig": {"nameservers": ["10.0.0.2"], "options": [{"name": "ndots", "value": "2"}]},
            "terminationGracePeriodSeconds": 60, "revisionHistoryLimit": 0,
            "podDisruptionBudget": {"minAvailable": "0%", "unhealthyPodEvictionPolicy": "AlwaysAllow"}}}),
        json!({"aws": {"identity": {"secretRef": {"name": "keys", "keyId": "AWS_ACCESS_KEY_ID", "accessKey":
            "AWS_SECRET_ACCESS_KEY", "sessionToken": "session.token"}}, "stsEndpoint":
            "https://sts.us-east-1.amazonaws.com", "caBundle": {"name": "corp-ca", "key": "ca.pem"}}}),
        json!({"storageClasses": [{"name": "gp3", "labels": {"team": "storage"}, "annotations":
            {"example.com/owner": "storage team"}, "parameters": {"ALLOWAUTOIOPSINCREASEONMODIFY": "true",
            "blockAttachUntilInitialized": "true", "ext4EncryptionSupport": "true", "tagSpecification_1": "a=b",
            "tagSpecificationTeam": "team=x", "csi.storage.k8s.io/provisioner-secret-name": "s"}}],
            "volumeSnapshotClasses": [{"name": "s", "labels": {"team": "storage"}, "parameters": {"LockMode":
            "governance", "outpostArn": "arn:aws:outposts:us-east-1:111122223333:outpost/op-1"}}]}),
        json!({"controller": {"podDisruptionBudget": {"maxUnavailable": 0}}, "node": {
            "extraArgs": ["--metadata-sources=kubernetes", "--legacy-xfs=true"], "selinux": true,
            "loggingFormat": "json", "revisionHistoryLimit": 100, "terminationGracePeriodSeconds": 0,
            "sidecars": {"nodeDriverRegistrar": {"logLevel": 0, "extraArgs": ["--timeout=5s"]}}}}),
    ]
}

fn object(name: &str, spec: &Value) -> Value {
    json!({"apiVersion": "csi.hardened.dev/v1alpha1", "kind": "HardenedCsiDriver", "metadata": {"name": name},
        "spec": spec})
}

fn rust_errors(name: &str, spec: &Value) -> Option<FieldErrors> {
    parse::from_value(object(name, spec)).and_then(|h| render::render(&h, &Capabilities::default())).err()
}

async fn server() -> (LocalApiServer, Api<DynamicObject>) {
    let server = LocalApiServer::start().await.expect("local API server");
    let client = server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &HardenedCsiDriver::crd()).await.expect("the CRD is admitted (rule costs)");
    let ar = kube::api::ApiResource::erase::<HardenedCsiDriver>(&());
    let api = Api::all_with(client, &ar);
    (server, api)
}

/// The API server's refusal of `obj`, or None when it is admitted (then it is deleted again).
async fn admission(api: &Api<DynamicObject>, obj: Value) -> Option<String> {
    let dynamic: DynamicObject = serde_json::from_value(obj).expect("object");
    match api.create(&PostParams::default(), &dynamic).await {
        Ok(created) => {
            let name = created.metadata.name.unwrap_or_default();
            api.delete(&name, &Default::default()).await.expect("delete");
            None
        }
        Err(kube::Error::Api(e)) => Some(e.message.clone()),
        Err(e) => panic!("unexpected client error: {e}"),
    }
}

#[tokio::test]
async fn every_bad_input_is_refused_by_both_with_the_field_and_the_same_words() {
    let (_server, api) = server().await;
    let mut exercised = BTreeSet::new();
    for case in cases() {
        let shown = format!("{} {}", case.name.chars().take(20).collect::<String>(), case.spec);
        let ctx: String = shown.chars().take(160).collect();
        let rust = rust_errors(&case.name, &case.spec).unwrap_or_else(|| panic!("{ctx}: Rust accepted it"));
        let refused = admission(&api, object(&case.name, &case.spec))
            .await
            .unwrap_or_else(|| panic!("{ctx}: the API server admitted it"));
        let (rust_says, server_says) = match &case.says {
            Says::Rule(r) => {
                exercised.insert(r.rule);
                (r.message, r.message)
            }
            Says::Each(a, b) => (*a, *b),
        };
        assert!(
            rust.0.iter().any(|e| e.field == case.rust_field && e.to_string().contains(rust_says)),
            "{ctx}: Rust must refuse {} saying {rust_says:?}; it said: {rust}",
            case.rust_field
        );
        assert!(
            refused.contains(&format!("{}: ", case.server_field)) && refused.contains(server_says),
            "{ctx}: the API server must refuse {} saying {server_says:?}; it said: {refused}",
            case.server_field
        );
        if case.rust_field == "spec.proxy.httpProxy" {
            // Credentials in a proxy URL are redacted in what the operator writes (the admission
            // error is the API server's, echoing the request).
            assert!(!rust.to_string().contains("u:$(AWS_SECRET_ACCESS_KEY)@"), "{rust}");
        }
    }
    let missing: Vec<&str> = CEL_RULES.iter().map(|r| r.rule).filter(|r| !exercised.contains(r)).collect();
    assert!(missing.is_empty(), "CEL rules no case exercises: {missing:#?}");
}

#[tokio::test]
async fn good_inputs_pass_both() {
    let (_server, api) = server().await;
    for spec in goods() {
        if let Some(e) = rust_errors("ebs", &spec) {
            panic!("{spec}: Rust refused it: {e}");
        }
        if let Some(e) = admission(&api, object("ebs", &spec)).await {
            panic!("{spec}: the API server refused it: {e}");
        }
    }
    let name = "a".repeat(63);
    assert!(rust_errors(&name, &json!({})).is_none());
    assert_eq!(admission(&api, object(&name, &json!({}))).await, None);
}

/// Every `x-kubernetes-validations` rule of the generated CRD, with its message.
fn crd_rules(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for r in m.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten() {
                out.push((
                    r["rule"].as_str().unwrap_or_default().to_string(),
                    r["message"].as_str().unwrap_or_default().to_string(),
                ));
            }
            m.values().for_each(|x| crd_rules(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| crd_rules(x, out)),
        _ => {}
    }
}

#[test]
fn the_crd_carries_exactly_the_rules_rust_checks() {
    let crd = serde_json::to_value(HardenedCsiDriver::crd()).expect("crd");
    let mut found = Vec::new();
    crd_rules(&crd, &mut found);
    let in_crd: BTreeSet<(String, String)> = found.into_iter().collect();
    let in_rust: BTreeSet<(String, String)> =
        CEL_RULES.iter().chain(TRANSITION_RULES).map(|r| (r.rule.to_string(), r.message.to_string())).collect();
    assert_eq!(
        in_crd.difference(&in_rust).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "CRD rules without a Rust twin in validate::CEL_RULES"
    );
    assert_eq!(
        in_rust.difference(&in_crd).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "validate::CEL_RULES entries the CRD lacks"
    );
}

/// A transition rule refuses the change at the API server, with the field and its words.
#[tokio::test]
async fn every_transition_rule_refuses_the_change() {
    let (_server, api) = server().await;
    for (rule, patch) in [(transition_rules::NAMESPACE_IMMUTABLE, json!({"spec": {"namespace": "storage"}}))] {
        let created: DynamicObject = serde_json::from_value(object("ebs", &json!({}))).expect("object");
        api.create(&PostParams::default(), &created).await.expect("create");
        let err = api.patch("ebs", &PatchParams::default(), &Patch::Merge(&patch)).await.expect_err("refused");
        let kube::Error::Api(e) = err else { panic!("{err}") };
        assert_eq!(e.code, 422, "{e:?}");
        assert!(e.message.contains(&format!("{}: ", rule.field)) && e.message.contains(rule.message), "{}", e.message);
        // The same object without the change is still admitted.
        api.patch("ebs", &PatchParams::default(), &Patch::Merge(json!({"spec": {"fips": false}}))).await.expect("ok");
        api.delete("ebs", &Default::default()).await.expect("delete");
    }
    assert_eq!(TRANSITION_RULES.len(), 1, "add a case above for each transition rule");
}

#[test]
fn secrets_in_urls_never_reach_messages() {
    let spec = json!({"proxy": {"httpProxy": "http://admin:hunter2@proxy internal:3128"}});
    let e = rust_errors("ebs", &spec).expect("refused").to_string();
    assert!(e.contains("http://***@proxy internal:3128") && !e.contains("hunter2"), "{e}");
}

// ---------------------------------------------------------------- $(VAR) expansion

/// The variables a string references under Kubernetes' expansion of env values and args
/// (`third_party/forked/golang/expansion`): `$$` is a literal `$`, `$(NAME)` a reference.
fn references(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            out.push(inner[..end].to_string());
            rest = &inner[end + 1..];
        } else {
            rest = after;
        }
    }
    out
}

/// Every env value and arg of every container of a render.
fn expanded_strings(children: &[render::Child]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for c in children {
        let v = serde_json::to_value(&c.object).expect("serialise");
        for ct in v["spec"]["template"]["spec"]["containers"].as_array().into_iter().flatten() {
            let who = format!("{} {}", c.key(), ct["name"].as_str().unwrap_or_default());
            for a in ct["args"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                out.push((who.clone(), a.to_string()));
            }
            for e in ct["env"].as_array().into_iter().flatten() {
                if let Some(val) = e["value"].as_str() {
                    out.push((format!("{who} env {}", e["name"]), val.to_string()));
                }
            }
        }
    }
    out
}

fn operator_references() -> BTreeSet<String> {
    let all = json!({"aws": {"identity": {"secretRef": {"name": "keys"}}, "clusterId": "c", "extraTags": {"a": "b"},
        "region": "us-east-1", "ec2Endpoint": "https://ec2.example.com", "stsEndpoint": "https://sts.example.com",
        "caBundle": {"name": "ca"}}, "metrics": {"enabled": true},
        "proxy": {"httpProxy": "http://p:3128", "noProxy": "x"}, "fips": false});
    let hcd = parse::from_value(object("ebs", &all)).expect("parses");
    let children = render::render(&hcd, &Capabilities::default()).expect("renders");
    expanded_strings(&children).iter().flat_map(|(_, s)| references(s)).collect()
}

#[test]
fn the_kms_endpoint_is_the_operators_own_and_never_reaches_the_driver() {
    let spec = json!({"aws": {"stsEndpoint": "https://sts.vpce-1.example.com",
        "kmsEndpoint": "https://kms.vpce-1.example.com"}});
    let hcd = parse::from_value(object("ebs", &spec)).expect("parses");
    assert_eq!(hcd.spec.aws.kms_endpoint.as_deref(), Some("https://kms.vpce-1.example.com"));
    let children = render::render(&hcd, &Capabilities::default()).expect("renders");
    let text = serde_json::to_string(&children.iter().map(|c| &c.object).collect::<Vec<_>>()).expect("JSON");
    // The STS endpoint is passed to the driver (AWS_ENDPOINT_URL_STS); the KMS one is not.
    assert!(text.contains("sts.vpce-1.example.com"), "the driver gets its STS endpoint");
    assert!(!text.contains("kms.vpce-1.example.com"), "the driver never calls KMS: {text}");
}

#[test]
fn expansion_reference_parser_reads_like_kubernetes() {
    assert_eq!(references("--endpoint=$(CSI_ENDPOINT)"), ["CSI_ENDPOINT"]);
    assert_eq!(references("$$(X) $(Y) $$$(Z) $ (W) $(open"), ["Y", "Z"]);
    assert!(references("http://u:$$(AWS_SECRET_ACCESS_KEY)@p").is_empty());
}

#[test]
fn user_strings_reach_containers_literally() {
    let spec = json!({"controller": {"extraArgs": ["--aws-sdk-debug-log=$(AWS_SECRET_ACCESS_KEY)", "--x=$$(Y)$"]}});
    let hcd = parse::from_value(object("ebs", &spec)).expect("parses");
    let children = render::render(&hcd, &Capabilities::default()).expect("renders");
    let strings = expanded_strings(&children);
    let args: Vec<&str> = strings.iter().map(|(_, s)| s.as_str()).collect();
    assert!(args.contains(&"--aws-sdk-debug-log=$$(AWS_SECRET_ACCESS_KEY)"), "{args:?}");
    assert!(args.contains(&"--x=$$$$(Y)$$"), "{args:?}");
    let allowed = operator_references();
    for (who, s) in &strings {
        for r in references(s) {
            assert!(allowed.contains(&r), "{who}: {s:?} references ${r}");
        }
    }
    assert!(!allowed.contains("AWS_SECRET_ACCESS_KEY"), "{allowed:?}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn hostile() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-zA-Z0-9_$()./:@=, -]{0,16}").expect("regex")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whatever a user writes into any string that reaches an env value or an arg, a spec that
        /// renders references no variable but those the operator put there.
        #[test]
        fn no_rendered_env_value_or_arg_references_a_variable_the_user_wrote(
            arg in hostile(), key in hostile(), value in hostile(), cluster in hostile(), proxy in hostile(),
            no_proxy in hostile(), endpoint in hostile(), kubelet in hostile(), region in hostile(),
        ) {
            let (env_a, env_b, sidecar_arg) = (value.clone(), key.clone(), format!("--x={value}"));
            let spec = json!({
                "aws": {"identity": {"secretRef": {"name": "keys"}}, "clusterId": cluster,
                    "extraTags": {key: value}, "region": region, "ec2Endpoint": format!("https://{endpoint}"),
                    "stsEndpoint": format!("https://{endpoint}")},
                "controller": {"extraArgs": [format!("--aws-sdk-debug-log={arg}"), arg.clone()],
                    "sidecars": {"provisioner": {"extraArgs": [format!("--timeout={arg}"), sidecar_arg]}},
                    "env": [{"name": "USER_VALUE", "value": env_a}]},
                "proxy": {"httpProxy": format!("http://{proxy}"), "noProxy": no_proxy},
                "node": {"kubeletPath": format!("/var/lib/{kubelet}"),
                    "extraArgs": [format!("--metadata-sources={arg}")],
                    "env": [{"name": "USER_VALUE", "value": env_b}]},
            });
            let allowed = operator_references();
            match parse::from_value(object("ebs", &spec)).and_then(|h| render::render(&h, &Capabilities::default())) {
                Err(errs) => {
                    for e in &errs.0 {
                        prop_assert!(e.field.starts_with("spec."), "{e}");
                    }
                }
                Ok(children) => {
                    for (who, s) in expanded_strings(&children) {
                        for r in references(&s) {
                            prop_assert!(allowed.contains(&r), "{who}: {s:?} references ${r}");
                        }
                    }
                }
            }
        }
    }
}

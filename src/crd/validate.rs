//! Cross-field and value rules of the spec, in Rust. The API server enforces the same rules as
//! CEL and schema bounds; these run too so `render` and the reconciler can name the field of an
//! object that bypassed admission (or a file given to `render`) and what would be valid.
//!
//! One validation, two enforcers: every rule that CEL can express is a [`CelRule`] below. The
//! CRD carries its expression and message (`spec.rs` refers to these constants), the Rust check
//! gives the same message, and both match values with the same regular expressions (the
//! `*_PATTERN` constants), so `kubectl apply`, Helm, GitOps, `render` and the `SpecValid`
//! condition refuse the same objects with the same words. `tests/validation.rs` enumerates
//! [`CEL_RULES`] and checks each against the local API server and this module.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use regex::Regex;

use super::HardenedCsiDriver;
use super::spec::*;
use super::versions;

/// One rule broken: the field path (`spec.aws.identity`), the value (shown as the API server
/// shows it, secrets redacted) and what is wrong / what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    /// The offending value, JSON-quoted, shortened and with credentials redacted; None for a
    /// rule about a whole object or list.
    pub value: Option<String>,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), value: None, message: message.into() }
    }

    pub fn with_value(field: impl Into<String>, value: &str, message: impl Into<String>) -> Self {
        Self { field: field.into(), value: Some(show(value)), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    /// What `render`, the condition and the logs show: credentials in any URL anywhere in the
    /// field path (a map key), the value or the message (a parse error quoting the input) redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (field, message) = (redact_credentials(&self.field), redact_credentials(&self.message));
        match &self.value {
            Some(v) => write!(f, "{field}: Invalid value: {v}: {message}"),
            None => write!(f, "{field}: {message}"),
        }
    }
}

/// Every `scheme://user:password@host` in `text` becomes `scheme://***@host`.
pub fn redact_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(['/', '?', '#', '"', '\'', ' ', ',', ';', ']', '\\', '\n']).unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// Every rule the spec breaks, in field order. Empty when valid.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldErrors(pub Vec<FieldError>);

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for FieldErrors {}

impl FieldErrors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    fn invalid(&mut self, field: impl Into<String>, value: &str, message: impl Into<String>) {
        self.0.push(FieldError::with_value(field, value, message));
    }
}

/// A value as a message shows it: JSON-quoted (control characters escaped), credentials in a
/// URL replaced by `***`, and cut after 80 characters with the full length said.
pub fn show(value: &str) -> String {
    let redacted = redact_url(value);
    let n = redacted.chars().count();
    if n <= 80 {
        return serde_json::Value::from(redacted).to_string();
    }
    let head: String = redacted.chars().take(80).collect();
    format!("{}... ({n} characters)", serde_json::Value::from(head))
}

/// `scheme://user:password@host` becomes `scheme://***@host`; anything else is unchanged.
pub fn redact_url(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else { return value.to_string() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => value.to_string(),
    }
}

/// A rule the CRD carries as CEL (`x-kubernetes-validations` at `field`) and this module checks
/// in Rust, with one message for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CelRule {
    /// Where the rule sits: the field path the API server names when it fails.
    pub field: &'static str,
    pub rule: &'static str,
    pub message: &'static str,
}

// Regular expressions shared by the CEL rules and the Rust checks. They avoid backslashes so the
// same text is valid inside a CEL string literal and in Rust, and use only what RE2 (the real API
// server) and the `regex` crate (kube's CEL, the local API server, this module) read alike.
macro_rules! tag_key_pattern {
    () => {
        "^[A-Za-z0-9+._:/@-]([A-Za-z0-9 +._:/@-]{0,126}[A-Za-z0-9+._:/@-])?$"
    };
}
macro_rules! tag_value_pattern {
    () => {
        "^([A-Za-z0-9+=._:/@-]([A-Za-z0-9 +=._:/@-]{0,254}[A-Za-z0-9+=._:/@-])?)?$"
    };
}
macro_rules! arg_pattern {
    () => {
        "^--?[A-Za-z0-9][A-Za-z0-9_.-]*(=.*)?$"
    };
}
macro_rules! managed_arg_pattern {
    () => {
        "^--?(endpoint|batching|logging-format|user-agent-extra|v|k8s-tag-cluster-id|extra-tags|http-endpoint)(=|$)"
    };
}
macro_rules! sidecar_managed_arg_pattern {
    () => {
        "^--?(csi-address|v|http-endpoint|metrics-address|leader-election|leader-election-namespace|\
        kubelet-registration-path|default-fstype|logging-format|feature-gates)(=|$)"
    };
}
macro_rules! node_managed_arg_pattern {
    () => {
        "^--?(endpoint|csi-mount-point-prefix|logging-format|v|volume-attach-limit|reserved-volume-attachments|\
        http-endpoint)(=|$)"
    };
}
macro_rules! managed_env_names {
    () => {
        "'CSI_ENDPOINT', 'CSI_NODE_NAME', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', \
        'AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_EC2_ENDPOINT', 'AWS_ENDPOINT_URL', 'AWS_ENDPOINT_URL_EC2', \
        'AWS_ENDPOINT_URL_STS', 'AWS_ENDPOINT_URL_KMS', 'AWS_USE_FIPS_ENDPOINT', 'GODEBUG', 'AWS_CA_BUNDLE', \
        'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy', 'AWS_ROLE_ARN', \
        'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_CONTAINER_CREDENTIALS_FULL_URI', 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'"
    };
}
macro_rules! reserved_pod_labels {
    () => {
        "'app', 'app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/managed-by', \
        'app.kubernetes.io/part-of', 'app.kubernetes.io/version'"
    };
}
macro_rules! reserved_class_annotations {
    () => {
        "'storageclass.kubernetes.io/is-default-class', 'snapshot.storage.kubernetes.io/is-default-class', \
        'csi.hardened.dev/owner-uid'"
    };
}
macro_rules! label_key_pattern {
    () => {
        "^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
    };
}
macro_rules! label_value_pattern {
    () => {
        "^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
    };
}
macro_rules! pdb_percent_pattern {
    () => {
        "^([0-9]|[1-9][0-9]|100)%$"
    };
}
macro_rules! path_pattern {
    () => {
        "^(/[A-Za-z0-9_.-]+)+$"
    };
}
macro_rules! dot_segment_pattern {
    () => {
        "/[.][.]?(/|$)"
    };
}
macro_rules! system_tree_pattern {
    () => {
        "^/(etc|proc|sys|dev|boot|root|usr|bin|sbin|lib|lib32|lib64)(/|$)"
    };
}
macro_rules! system_dirs {
    () => {
        "'/var', '/var/lib', '/var/run', '/run', '/home', '/opt', '/mnt', '/srv', '/tmp', '/media'"
    };
}
macro_rules! url_pattern {
    () => {
        "^https?://([A-Za-z0-9._~%!&()*+,;=-]+(:[A-Za-z0-9._~%!&()*+,;=-]*)?@)?[A-Za-z0-9.-]+(:[0-9]{1,5})?\
        (/[A-Za-z0-9._~%!&()*+,;=:@/-]*)?$"
    };
}
macro_rules! no_proxy_pattern {
    () => {
        "^[A-Za-z0-9.,:/*_%-]*$"
    };
}
macro_rules! percent_pattern {
    () => {
        "^([1-9][0-9]?|100)%$"
    };
}
macro_rules! dns_subdomain_pattern {
    () => {
        "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    };
}
macro_rules! fips_tag_pattern {
    () => {
        "(^|-)fips(-|$)"
    };
}
/// The FIPS digests of `versions::RELEASES`, as a CEL list (a unit test keeps the two equal).
macro_rules! fips_digests_cel {
    () => {
        "[]"
    };
}
// EBS IOPS bounds per volume type, from the EC2 API Reference (CreateVolume and ModifyVolume,
// `Iops`: gp3 3,000-80,000, io1 100-64,000, io2 100-256,000) and the EBS User Guide, "Amazon EBS
// volume types" (docs.aws.amazon.com/ebs/latest/userguide/ebs-volume-types.html; gp3 went to
// 80,000 IOPS and 2,000 MiB/s in September 2025). `IOPS_BOUNDS` below says the same for Rust.
macro_rules! iops_by_type {
    ($t:literal) => {
        concat!(
            "(",
            $t,
            " == 'gp3' ? self.iops >= 3000 && self.iops <= 80000 : ",
            $t,
            " == 'io1' ? self.iops >= 100 && self.iops <= 64000 : self.iops >= 100 && self.iops <= 256000)"
        )
    };
}
macro_rules! vac_parameter_pattern {
    () => {
        "^(tagSpecification|tagDeletion)_[A-Za-z0-9_.-]+$"
    };
}
macro_rules! duration_guard {
    () => {
        "self != '' && self.matches('^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$') && "
    };
}

pub const TAG_KEY_PATTERN: &str = tag_key_pattern!();
pub const TAG_VALUE_PATTERN: &str = tag_value_pattern!();
pub const KUBELET_PATH_PATTERN: &str = path_pattern!();
pub const URL_PATTERN: &str = url_pattern!();
pub const NO_PROXY_PATTERN: &str = no_proxy_pattern!();
pub const LABEL_KEY_PATTERN: &str = label_key_pattern!();
pub const LABEL_VALUE_PATTERN: &str = label_value_pattern!();

pub mod rules {
    //! The rules both enforcers apply, one constant each.
    use super::CelRule;

    pub const NAME_LENGTH: CelRule = CelRule {
        field: "metadata.name",
        rule: "size(self.metadata.name) <= 63",
        message: "metadata.name must be at most 63 characters: it is the app.kubernetes.io/instance label value of \
            every object the operator creates",
    };
    pub const PULL_SECRET_NAMES: CelRule = CelRule {
        field: "spec.images.pullSecrets",
        rule: concat!("self.all(s, size(s) <= 253 && s.matches('", dns_subdomain_pattern!(), "'))"),
        message: "pullSecrets must be Secret names: lowercase letters, digits, '-' and '.', at most 253",
    };
    pub const IDENTITY_ONE_OF: CelRule = CelRule {
        field: "spec.aws.identity",
        rule: "(has(self.irsa) ? 1 : 0) + (has(self.podIdentity) ? 1 : 0) + (has(self.secretRef) ? 1 : 0) == 1",
        message: "exactly one of irsa, podIdentity, secretRef must be set",
    };
    pub const TAGS_RESERVED: CelRule = CelRule {
        field: "spec.aws.extraTags",
        rule: "self.all(k, k != 'CSIVolumeName' && k != 'CSIVolumeSnapshotName' && !k.startsWith('kubernetes.io') && \
            !k.startsWith('ebs.csi.aws.com/'))",
        message: "extraTags must not use reserved keys: CSIVolumeName, CSIVolumeSnapshotName, kubernetes.io*, \
            ebs.csi.aws.com/* (the driver would exit at start-up)",
    };
    pub const TAG_KEYS: CelRule = CelRule {
        field: "spec.aws.extraTags",
        rule: concat!("self.all(k, k.matches('", tag_key_pattern!(), "') && !k.lowerAscii().startsWith('aws:'))"),
        message: "extraTags keys must be 1-128 characters: ASCII letters, digits, spaces and + - . _ : / @, not \
            starting or ending with a space, without '=' or ',' (the --extra-tags separators), and not starting with \
            aws:",
    };
    pub const TAG_VALUES: CelRule = CelRule {
        field: "spec.aws.extraTags",
        rule: concat!("self.all(k, self[k].matches('", tag_value_pattern!(), "'))"),
        message: "extraTags values must be at most 256 characters: ASCII letters, digits, spaces and + - = . _ : / @, \
            not starting or ending with a space, without ',' (the --extra-tags separator)",
    };
    pub const RETAG_CLUSTER_ID: CelRule = CelRule {
        field: "spec.aws",
        rule: "!has(self.retagExistingVolumes) || !self.retagExistingVolumes || has(self.clusterId)",
        message: "retagExistingVolumes needs clusterId: without it the inventory is account-wide and would tag other \
            clusters' volumes too; set clusterId to the driver's --k8s-tag-cluster-id",
    };
    pub const RETAG_IDENTITY: CelRule = CelRule {
        field: "spec.aws",
        rule: "!has(self.retagExistingVolumes) || !self.retagExistingVolumes || !has(self.identity) || \
            !has(self.identity.secretRef)",
        message: "retagExistingVolumes tags as the driver's identity, which the operator cannot take with static keys \
            (identity.secretRef: it never reads them); use irsa or podIdentity, or tag the volumes yourself",
    };
    pub const EC2_ENDPOINT: CelRule = CelRule {
        field: "spec.aws.ec2Endpoint",
        rule: concat!("self.matches('", url_pattern!(), "')"),
        message: "ec2Endpoint must be an http:// or https:// URL like https://ec2.us-east-1.amazonaws.com (host name \
            or IPv4 address, optional port and path; no spaces, quotes or '$')",
    };
    pub const STS_ENDPOINT: CelRule = CelRule {
        field: "spec.aws.stsEndpoint",
        rule: concat!("self.matches('", url_pattern!(), "')"),
        message: "stsEndpoint must be an http:// or https:// URL like https://sts.us-east-1.amazonaws.com (host name \
            or IPv4 address, optional port and path; no spaces, quotes or '$')",
    };
    pub const KMS_ENDPOINT: CelRule = CelRule {
        field: "spec.aws.kmsEndpoint",
        rule: concat!("self.matches('", url_pattern!(), "')"),
        message: "kmsEndpoint must be an http:// or https:// URL like https://kms.us-east-1.amazonaws.com (host name \
            or IPv4 address, optional port and path; no spaces, quotes or '$')",
    };
    pub const EXTRA_ARGS_FORM: CelRule = CelRule {
        field: "spec.controller.extraArgs",
        rule: concat!("self.all(a, a.matches('", arg_pattern!(), "'))"),
        message: "extraArgs must be driver flags like --name or --name=value, one per item",
    };
    pub const EXTRA_ARGS_MANAGED: CelRule = CelRule {
        field: "spec.controller.extraArgs",
        rule: concat!("self.all(a, !a.matches('", managed_arg_pattern!(), "'))"),
        message: "extraArgs must not repeat a flag the operator sets (--endpoint, --batching, --logging-format, \
            --user-agent-extra, --v, --k8s-tag-cluster-id, --extra-tags, --http-endpoint): use the matching spec \
            field (logLevel, aws.clusterId, aws.extraTags, metrics.enabled)",
    };
    pub const ATTACH_EXCLUSIVE: CelRule = CelRule {
        field: "spec.node",
        rule: "!(has(self.volumeAttachLimit) && has(self.reservedVolumeAttachments))",
        message: "volumeAttachLimit and reservedVolumeAttachments are mutually exclusive; set one",
    };
    pub const KUBELET_PATH_FORM: CelRule = CelRule {
        field: "spec.node.kubeletPath",
        rule: concat!("self.matches('", path_pattern!(), "') && !self.matches('", dot_segment_pattern!(), "')"),
        message: "kubeletPath must be a plain absolute path like /var/lib/kubelet: letters, digits, '.', '_' and '-' \
            between single slashes, no '.' or '..' segment, no trailing slash",
    };
    pub const KUBELET_PATH_SYSTEM: CelRule = CelRule {
        field: "spec.node.kubeletPath",
        rule: concat!("!self.matches('", system_tree_pattern!(), "') && !(self in [", system_dirs!(), "])"),
        message: "kubeletPath must not be a system directory (it is mounted read-write, Bidirectional, into a \
            privileged container): not /etc, /proc, /sys, /dev, /boot, /root, /usr, /bin, /sbin, /lib* or below, nor \
            /var, /var/lib, /var/run, /run, /home, /opt, /mnt, /srv, /tmp, /media themselves; the kubelet's root \
            directory is usually /var/lib/kubelet (k0s: /var/lib/k0s/kubelet, MicroK8s: \
            /var/snap/microk8s/common/var/lib/kubelet)",
    };
    pub const MAX_UNAVAILABLE: CelRule = CelRule {
        field: "spec.node.maxUnavailable",
        // kube's CEL has no type(); an int equals its own decimal text parsed back, a string never does.
        rule: concat!(
            "string(self).matches('^-?[0-9]{1,18}$') && self == int(string(self)) ? self >= 1 : string(self).matches('",
            percent_pattern!(),
            "')"
        ),
        message: "maxUnavailable must be a number of at least 1 or a percentage from 1% to 100%, like 10%",
    };
    pub const FIPS_IMAGES: CelRule = CelRule {
        field: "spec",
        rule: concat!(
            "!self.fips || [self.images.driver, self.images.provisioner, self.images.attacher, ",
            "self.images.snapshotter, self.images.resizer, self.images.livenessProbe, ",
            "self.images.nodeDriverRegistrar].all(i, ",
            "(!has(i.tag) || i.tag.matches('",
            fips_tag_pattern!(),
            "')) && (!has(i.digest) || i.digest == '' || has(i.tag) || i.digest in ",
            fips_digests_cel!(),
            "))"
        ),
        message: "with fips: true every image must be a FIPS image: an explicit tag must be a FIPS tag (like \
            1.64.0-fips), and a digest needs such a tag beside it unless it is a FIPS digest of the operator's release \
            table; remove the override to get the release's FIPS image, or set fips: false deliberately",
    };
    pub const STORAGE_CLASS_DEFAULT: CelRule = CelRule {
        field: "spec.storageClasses",
        rule: "self.filter(c, c.default).size() <= 1",
        message: "at most one StorageClass may be the default",
    };
    pub const STORAGE_CLASS_UNIQUE: CelRule = CelRule {
        field: "spec.storageClasses",
        rule: "self.all(c, self.exists_one(d, d.name == c.name))",
        message: "StorageClass names must be unique",
    };
    pub const SNAPSHOT_CLASS_DEFAULT: CelRule = CelRule {
        field: "spec.volumeSnapshotClasses",
        rule: "self.filter(c, c.default).size() <= 1",
        message: "at most one VolumeSnapshotClass may be the default",
    };
    pub const SNAPSHOT_CLASS_UNIQUE: CelRule = CelRule {
        field: "spec.volumeSnapshotClasses",
        rule: "self.all(c, self.exists_one(d, d.name == c.name))",
        message: "VolumeSnapshotClass names must be unique",
    };
    pub const IOPS_TYPE: CelRule = CelRule {
        field: "spec.storageClasses[*]",
        rule: "!has(self.iops) || self.type in ['gp3', 'io1', 'io2']",
        message: "iops applies only to gp3, io1 and io2",
    };
    pub const THROUGHPUT_TYPE: CelRule = CelRule {
        field: "spec.storageClasses[*]",
        rule: "!has(self.throughput) || self.type == 'gp3'",
        message: "throughput applies only to gp3",
    };
    pub const IOPS_RANGE: CelRule = CelRule {
        field: "spec.storageClasses[*]",
        rule: concat!("!has(self.iops) || ", iops_by_type!("self.type")),
        message: "iops is out of the volume type's range (EBS limits): gp3 3000-80000, io1 100-64000, io2 100-256000",
    };
    pub const VAC_UNIQUE: CelRule = CelRule {
        field: "spec.volumeAttributesClasses",
        rule: "self.all(c, self.exists_one(d, d.name == c.name))",
        message: "VolumeAttributesClass names must be unique",
    };
    pub const VAC_NOT_EMPTY: CelRule = CelRule {
        field: "spec.volumeAttributesClasses[*]",
        rule: "has(self.type) || has(self.iops) || has(self.throughput) || (has(self.parameters) && \
            size(self.parameters) > 0)",
        message: "a VolumeAttributesClass must set at least one of type, iops, throughput or a tag parameter",
    };
    pub const VAC_IOPS_TYPE: CelRule = CelRule {
        field: "spec.volumeAttributesClasses[*]",
        rule: "!has(self.iops) || !has(self.type) || self.type in ['gp3', 'io1', 'io2']",
        message: "iops applies only to gp3, io1 and io2",
    };
    pub const VAC_IOPS_RANGE: CelRule = CelRule {
        field: "spec.volumeAttributesClasses[*]",
        rule: concat!("!has(self.iops) || !has(self.type) || ", iops_by_type!("self.type")),
        message: "iops is out of the volume type's range (EBS limits): gp3 3000-80000, io1 100-64000, io2 100-256000",
    };
    pub const VAC_THROUGHPUT_TYPE: CelRule = CelRule {
        field: "spec.volumeAttributesClasses[*]",
        rule: "!has(self.throughput) || !has(self.type) || self.type == 'gp3'",
        message: "throughput applies only to gp3",
    };
    pub const VAC_PARAMETERS: CelRule = CelRule {
        field: "spec.volumeAttributesClasses[*].parameters",
        rule: concat!(
            "self.all(k, k.matches('",
            vac_parameter_pattern!(),
            "') && (!k.startsWith('tagSpecification') || self[k].contains('=')))"
        ),
        message: "parameters takes only tag parameters: tagSpecification_<n> with a value key=value (adds or \
            overwrites a tag) and tagDeletion_<n> with a tag key (removes it); type, iops and throughput have their \
            own fields",
    };
    pub const KMS_NEEDS_ENCRYPTION: CelRule = CelRule {
        field: "spec.storageClasses[*]",
        rule: "!has(self.kmsKeyId) || self.encrypted",
        message: "kmsKeyId needs encrypted: true",
    };
    pub const DIGEST: CelRule = CelRule {
        field: "spec.images.*.digest",
        rule: "self == '' || self.matches('^sha256:[a-f0-9]{64}$')",
        message: "digest must be sha256: followed by 64 lowercase hex digits",
    };
    pub const HTTP_PROXY: CelRule = CelRule {
        field: "spec.proxy.httpProxy",
        rule: concat!("self.matches('", url_pattern!(), "')"),
        message: "httpProxy must be an http:// or https:// URL like http://proxy.internal:3128, credentials as \
            user:password before the host (host name or IPv4 address; no spaces, quotes or '$')",
    };
    pub const NO_PROXY: CelRule = CelRule {
        field: "spec.proxy.noProxy",
        rule: concat!("self.matches('", no_proxy_pattern!(), "')"),
        message: "noProxy must be a comma-separated list of host names, domains (.example.com), IP addresses or CIDRs: \
            letters, digits and . , : / * _ % - only",
    };
    pub const SIDECAR_ARGS_FORM: CelRule = CelRule {
        field: "spec.*.sidecars.*.extraArgs",
        rule: concat!("self.all(a, a.matches('", arg_pattern!(), "'))"),
        message: "sidecar extraArgs must be flags like --name or --name=value, one per item",
    };
    pub const SIDECAR_ARGS_MANAGED: CelRule = CelRule {
        field: "spec.*.sidecars.*.extraArgs",
        rule: concat!("self.all(a, !a.matches('", sidecar_managed_arg_pattern!(), "'))"),
        message: "sidecar extraArgs must not set a flag the operator manages (--csi-address, --v, --http-endpoint, \
            --metrics-address, --leader-election, --leader-election-namespace, --kubelet-registration-path, \
            --default-fstype, --logging-format, --feature-gates): use logLevel, loggingFormat, \
            controller.defaultFsType; tuning flags such as --timeout, --worker-threads, --kube-api-qps replace the \
            operator's default",
    };
    pub const NODE_ARGS_MANAGED: CelRule = CelRule {
        field: "spec.node.extraArgs",
        rule: concat!("self.all(a, !a.matches('", node_managed_arg_pattern!(), "'))"),
        message: "node extraArgs must not repeat a flag the operator sets (--endpoint, --csi-mount-point-prefix, \
            --logging-format, --v, --volume-attach-limit, --reserved-volume-attachments, --http-endpoint): use the \
            matching spec field (kubeletPath, loggingFormat, logLevel, volumeAttachLimit, \
            reservedVolumeAttachments, metrics)",
    };
    pub const ENV_MANAGED: CelRule = CelRule {
        field: "spec.*.env",
        rule: concat!("self.all(e, !(e.name in [", managed_env_names!(), "]))"),
        message: "env must not set a variable the operator manages (CSI_ENDPOINT, CSI_NODE_NAME, AWS credentials \
            and identity, AWS_REGION, AWS_DEFAULT_REGION, AWS_EC2_ENDPOINT, AWS_ENDPOINT_URL*, \
            AWS_USE_FIPS_ENDPOINT, GODEBUG, AWS_CA_BUNDLE, HTTP(S)_PROXY, NO_PROXY in either case): use aws.*, \
            proxy, fips, caBundle",
    };
    pub const DNS_CONFIG: CelRule = CelRule {
        field: "spec.*.dnsConfig",
        rule: "(!has(self.nameservers) || size(self.nameservers) <= 3) && (!has(self.searches) || \
            size(self.searches) <= 32)",
        message: "dnsConfig takes at most 3 nameservers and 32 searches",
    };
    pub const POD_LABELS_RESERVED: CelRule = CelRule {
        field: "spec.*.podLabels",
        rule: concat!("self.all(k, !(k in [", reserved_pod_labels!(), "]))"),
        message: "labels must not set the operator's labels (app, app.kubernetes.io/name, instance, managed-by, \
            part-of, version): selectors and ownership depend on them",
    };
    pub const LABEL_KEYS: CelRule = CelRule {
        field: "spec.*.podLabels",
        rule: concat!("self.all(k, k.matches('", label_key_pattern!(), "'))"),
        message: "label keys must be [prefix/]name: name 1-63 letters, digits, '-', '_', '.', starting and ending \
            with a letter or digit; prefix a DNS subdomain of at most 253",
    };
    pub const LABEL_VALUES: CelRule = CelRule {
        field: "spec.*.podLabels",
        rule: concat!("self.all(k, self[k].matches('", label_value_pattern!(), "'))"),
        message: "label values must be empty or 1-63 letters, digits, '-', '_', '.', starting and ending with a \
            letter or digit",
    };
    pub const ANNOTATION_KEYS: CelRule = CelRule {
        field: "spec.*.podAnnotations",
        rule: concat!("self.all(k, k.matches('", label_key_pattern!(), "'))"),
        message: "annotation keys must be [prefix/]name: name 1-63 letters, digits, '-', '_', '.', starting and \
            ending with a letter or digit; prefix a DNS subdomain of at most 253",
    };
    pub const CLASS_ANNOTATIONS: CelRule = CelRule {
        field: "spec.*Classes[*].annotations",
        rule: concat!("self.all(k, !(k in [", reserved_class_annotations!(), "]))"),
        message: "annotations must not set storageclass.kubernetes.io/is-default-class, \
            snapshot.storage.kubernetes.io/is-default-class (use default: true) or csi.hardened.dev/owner-uid",
    };
    pub const PDB_EXCLUSIVE: CelRule = CelRule {
        field: "spec.controller.podDisruptionBudget",
        rule: "!(has(self.maxUnavailable) && has(self.minAvailable))",
        message: "maxUnavailable and minAvailable are mutually exclusive; set one",
    };
    pub const PDB_VALUE: CelRule = CelRule {
        field: "spec.controller.podDisruptionBudget.*",
        rule: concat!(
            "string(self).matches('^-?[0-9]{1,18}$') && self == int(string(self)) ? self >= 0 : string(self).matches('",
            pdb_percent_pattern!(),
            "')"
        ),
        message: "must be a number of at least 0 or a percentage from 0% to 100%, like 1 or 50%",
    };
    pub const SCRAPE_INTERVAL: CelRule = CelRule {
        field: "spec.metrics.serviceMonitor.interval",
        rule: "self.matches('^([0-9]{1,4}h)?([0-9]{1,4}m)?([0-9]{1,6}s)?$') && self != '' && \
            !self.matches('^(0+[hms])+$')",
        message: "interval must be a Prometheus duration of hours, minutes and seconds like 15s, 1m or 1m30s \
            (not zero)",
    };
    pub const SERVICE_MONITOR_METRICS: CelRule = CelRule {
        field: "spec.metrics",
        rule: "!has(self.serviceMonitor) || !has(self.serviceMonitor.enabled) || !self.serviceMonitor.enabled || \
            (has(self.enabled) && self.enabled)",
        message: "metrics.serviceMonitor.enabled needs metrics.enabled: true (the ServiceMonitors scrape the \
            metrics Services it creates)",
    };
    pub const INTERVAL: CelRule = CelRule {
        field: "spec.inventory.interval",
        rule: concat!(duration_guard!(), "duration(self) >= duration('1m') && duration(self) <= duration('24h')"),
        message: "interval must be a duration from 1m to 24h, like 5m or 1h30m",
    };
    pub const ORPHAN_GRACE: CelRule = CelRule {
        field: "spec.inventory.orphanGracePeriod",
        rule: concat!(duration_guard!(), "duration(self) >= duration('1m') && duration(self) <= duration('8760h')"),
        message: "orphanGracePeriod must be a duration from 1m to 8760h (one year), like 1h or 72h",
    };
    pub const RETAG_INVENTORY: CelRule = CelRule {
        field: "spec",
        rule: "!has(self.aws) || !has(self.aws.retagExistingVolumes) || !self.aws.retagExistingVolumes || \
            !has(self.inventory) || !has(self.inventory.enabled) || self.inventory.enabled",
        message: "aws.retagExistingVolumes needs inventory.enabled: the retag works from the inventory's view of each \
            volume's tags",
    };
    pub const STUCK_THRESHOLD: CelRule = CelRule {
        field: "spec.inventory.stuckThreshold",
        rule: concat!(duration_guard!(), "duration(self) >= duration('1m') && duration(self) <= duration('168h')"),
        message: "stuckThreshold must be a duration from 1m to 168h (one week), like 15m",
    };
}

/// Rules on a change (`oldSelf`): only the API server sees the old object, so there is no Rust
/// check of the same rule. The operator's own guard for the namespace is the install-time driver
/// namespace (`SpecValid=False`, `NotAllowedByInstallation`).
pub mod transition_rules {
    use super::CelRule;

    pub const NAMESPACE_IMMUTABLE: CelRule = CelRule {
        field: "spec.namespace",
        rule: "self == oldSelf",
        message: "spec.namespace cannot change: moving the driver would leave every node without its node plugin. \
            Delete this HardenedCsiDriver, reinstall the operator with driverNamespace set to the new namespace and \
            create it there (README: Moving the driver to another namespace)",
    };
}

/// Every transition rule of the CRD (tested on an update at the API server).
pub const TRANSITION_RULES: &[CelRule] = &[transition_rules::NAMESPACE_IMMUTABLE];

/// Every CEL rule of the CRD, for the tests that check both enforcers.
pub const CEL_RULES: &[CelRule] = &[
    rules::NAME_LENGTH,
    rules::PULL_SECRET_NAMES,
    rules::IDENTITY_ONE_OF,
    rules::TAGS_RESERVED,
    rules::TAG_KEYS,
    rules::TAG_VALUES,
    rules::RETAG_CLUSTER_ID,
    rules::RETAG_IDENTITY,
    rules::RETAG_INVENTORY,
    rules::EC2_ENDPOINT,
    rules::STS_ENDPOINT,
    rules::KMS_ENDPOINT,
    rules::EXTRA_ARGS_FORM,
    rules::EXTRA_ARGS_MANAGED,
    rules::ATTACH_EXCLUSIVE,
    rules::KUBELET_PATH_FORM,
    rules::KUBELET_PATH_SYSTEM,
    rules::MAX_UNAVAILABLE,
    rules::FIPS_IMAGES,
    rules::STORAGE_CLASS_DEFAULT,
    rules::STORAGE_CLASS_UNIQUE,
    rules::SNAPSHOT_CLASS_DEFAULT,
    rules::SNAPSHOT_CLASS_UNIQUE,
    rules::IOPS_TYPE,
    rules::IOPS_RANGE,
    rules::THROUGHPUT_TYPE,
    rules::VAC_UNIQUE,
    rules::VAC_NOT_EMPTY,
    rules::VAC_IOPS_TYPE,
    rules::VAC_IOPS_RANGE,
    rules::VAC_THROUGHPUT_TYPE,
    rules::VAC_PARAMETERS,
    rules::KMS_NEEDS_ENCRYPTION,
    rules::DIGEST,
    rules::HTTP_PROXY,
    rules::NO_PROXY,
    rules::INTERVAL,
    rules::ORPHAN_GRACE,
    rules::STUCK_THRESHOLD,
    rules::SIDECAR_ARGS_FORM,
    rules::SIDECAR_ARGS_MANAGED,
    rules::NODE_ARGS_MANAGED,
    rules::ENV_MANAGED,
    rules::DNS_CONFIG,
    rules::POD_LABELS_RESERVED,
    rules::LABEL_KEYS,
    rules::LABEL_VALUES,
    rules::ANNOTATION_KEYS,
    rules::PDB_EXCLUSIVE,
    rules::PDB_VALUE,
    rules::CLASS_ANNOTATIONS,
    rules::SCRAPE_INTERVAL,
    rules::SERVICE_MONITOR_METRICS,
];

/// Bounds of sizes and lengths, in the CRD as `maxItems`/`maxProperties`/`maxLength` and checked
/// here. EBS allows 50 tags a volume; the driver adds up to 10 of its own.
pub const MAX_EXTRA_TAGS: usize = 40;
pub const MAX_EXTRA_ARGS: usize = 32;
pub const MAX_ARG_LENGTH: usize = 1024;
pub const MAX_CLASSES: usize = 32;
pub const MAX_PULL_SECRETS: usize = 16;
pub const MAX_SELECTOR_LABELS: usize = 32;
pub const MAX_TOLERATIONS: usize = 64;
pub const MAX_SPREAD_CONSTRAINTS: usize = 16;
pub const MAX_PARAMETERS: usize = 64;
pub const MAX_PARAMETER_VALUE: usize = 1024;
pub const MAX_MOUNT_OPTIONS: usize = 32;
pub const MAX_MOUNT_OPTION: usize = 256;
pub const MAX_TOPOLOGIES: usize = 16;
pub const MAX_URL: usize = 2048;
pub const MAX_NO_PROXY: usize = 4096;
pub const MAX_PATH: usize = 256;
pub const MAX_REGISTRY: usize = 255;
pub const MAX_KMS_KEY: usize = 2048;
/// EKS cluster names are at most 100 characters; the id also ends up in the tag key
/// `kubernetes.io/cluster/<id>`, which EBS limits to 128.
pub const MAX_CLUSTER_ID: usize = 100;

/// AWS regions that have FIPS endpoints for EC2 and STS.
pub const FIPS_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "ca-west-1",
    "us-gov-east-1",
    "us-gov-west-1",
];

/// StorageClass parameters driver 1.64 accepts (`CreateVolume`; it lower-cases each key before
/// matching, so these compare case-insensitively), besides those with their own field. `blockExpress`
/// is deprecated and ignored by the driver, but still accepted.
pub const STORAGE_CLASS_PARAMETERS: &[&str] = &[
    "iopsPerGB",
    "allowAutoIOPSPerGBIncrease",
    "allowAutoIOPSIncreaseOnModify",
    "volumeInitializationRate",
    "blockExpress",
    "blockSize",
    "inodeSize",
    "bytesPerInode",
    "numberOfInodes",
    "ext4BigAlloc",
    "ext4ClusterSize",
    "ext4EncryptionSupport",
    "blockAttachUntilInitialized",
];
/// Keys the driver matches by prefix, case-sensitively (`tagSpecification_1`, ...).
pub const TAG_PARAMETER_PREFIX: &str = "tagSpecification";
/// Keys under `csi.storage.k8s.io/` the external-provisioner consumes itself (it refuses any
/// other key of that prefix; `fstype` has its field, the `pvc/*`/`pv/*` keys it adds itself).
pub const PROVISIONER_PARAMETERS: &[&str] = &[
    "csi.storage.k8s.io/provisioner-secret-name",
    "csi.storage.k8s.io/provisioner-secret-namespace",
    "csi.storage.k8s.io/controller-publish-secret-name",
    "csi.storage.k8s.io/controller-publish-secret-namespace",
    "csi.storage.k8s.io/node-stage-secret-name",
    "csi.storage.k8s.io/node-stage-secret-namespace",
    "csi.storage.k8s.io/node-publish-secret-name",
    "csi.storage.k8s.io/node-publish-secret-namespace",
    "csi.storage.k8s.io/controller-expand-secret-name",
    "csi.storage.k8s.io/controller-expand-secret-namespace",
    "csi.storage.k8s.io/node-expand-secret-name",
    "csi.storage.k8s.io/node-expand-secret-namespace",
];
/// Parameters the spec sets from a field (lower-case as the driver compares them), with the field.
const STORAGE_CLASS_FIELD_PARAMETERS: &[(&str, &str)] = &[
    ("type", "type"),
    ("encrypted", "encrypted"),
    ("kmskeyid", "kmsKeyId"),
    ("iops", "iops"),
    ("throughput", "throughput"),
    ("fstype", "fsType"),
    ("csi.storage.k8s.io/fstype", "fsType"),
];
/// VolumeSnapshotClass parameters driver 1.64 accepts (`CreateSnapshot`, case-insensitive).
pub const SNAPSHOT_CLASS_PARAMETERS: &[&str] = &[
    "fastSnapshotRestoreAvailabilityZones",
    "outpostArn",
    "lockMode",
    "lockDuration",
    "lockExpirationDate",
    "lockCoolOffPeriod",
];
/// IOPS a volume type may be provisioned with (EBS limits; the sources are cited at
/// `iops_by_type!`). Types not listed take no `iops`.
pub const IOPS_BOUNDS: &[(VolumeType, i64, i64)] =
    &[(VolumeType::Gp3, 3_000, 80_000), (VolumeType::Io1, 100, 64_000), (VolumeType::Io2, 100, 256_000)];
/// Throughput in MiB/s, gp3 only (EC2 API Reference, CreateVolume/ModifyVolume `Throughput`).
pub const THROUGHPUT_BOUNDS: (i64, i64) = (125, 2_000);

/// The IOPS range of a volume type, None when the type takes no `iops`.
pub fn iops_bounds(t: VolumeType) -> Option<(i64, i64)> {
    IOPS_BOUNDS.iter().find(|(v, _, _)| *v == t).map(|(_, lo, hi)| (*lo, *hi))
}

/// Keys under `csi.storage.k8s.io/` the external-snapshotter consumes itself.
pub const SNAPSHOTTER_PARAMETERS: &[&str] = &[
    "csi.storage.k8s.io/snapshotter-secret-name",
    "csi.storage.k8s.io/snapshotter-secret-namespace",
    "csi.storage.k8s.io/snapshotter-list-secret-name",
    "csi.storage.k8s.io/snapshotter-list-secret-namespace",
];

/// Whether the driver (or the sidecar in front of it) accepts `key`: the driver's own keys
/// case-insensitively, tag templates by their case-sensitive prefix, the sidecar's exactly.
pub fn known_parameter(key: &str, driver: &[&str], sidecar: &[&str]) -> bool {
    driver.iter().any(|k| k.eq_ignore_ascii_case(key))
        || key.starts_with(TAG_PARAMETER_PREFIX)
        || sidecar.contains(&key)
}

/// Bounds of the inventory durations (the CEL rules above say the same).
pub const INTERVAL_BOUNDS: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(24 * 3600));
pub const ORPHAN_GRACE_BOUNDS: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(8760 * 3600));
pub const STUCK_THRESHOLD_BOUNDS: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(168 * 3600));

fn re(pattern: &'static str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| unreachable!("built-in pattern {pattern}: {e}"))
}

static TAG_KEY: LazyLock<Regex> = LazyLock::new(|| re(TAG_KEY_PATTERN));
static TAG_VALUE: LazyLock<Regex> = LazyLock::new(|| re(TAG_VALUE_PATTERN));
static ARG: LazyLock<Regex> = LazyLock::new(|| re(arg_pattern!()));
static MANAGED_ARG: LazyLock<Regex> = LazyLock::new(|| re(managed_arg_pattern!()));
static SIDECAR_MANAGED_ARG: LazyLock<Regex> = LazyLock::new(|| re(sidecar_managed_arg_pattern!()));
static NODE_MANAGED_ARG: LazyLock<Regex> = LazyLock::new(|| re(node_managed_arg_pattern!()));
static LABEL_KEY: LazyLock<Regex> = LazyLock::new(|| re(LABEL_KEY_PATTERN));
static LABEL_VALUE: LazyLock<Regex> = LazyLock::new(|| re(LABEL_VALUE_PATTERN));
static PDB_PERCENT: LazyLock<Regex> = LazyLock::new(|| re(pdb_percent_pattern!()));
static ENV_NAME: LazyLock<Regex> = LazyLock::new(|| re("^[-._a-zA-Z][-._a-zA-Z0-9]*$"));

/// The variables the operator sets (or that carry the driver's identity), refused in `env`.
pub fn managed_env_names() -> Vec<&'static str> {
    managed_env_names!().split(',').map(|n| n.trim().trim_matches('\'')).collect()
}

/// The labels the operator puts on pods, refused in `podLabels`.
pub fn reserved_pod_labels() -> Vec<&'static str> {
    reserved_pod_labels!().split(',').map(|n| n.trim().trim_matches('\'')).collect()
}
static PATH: LazyLock<Regex> = LazyLock::new(|| re(KUBELET_PATH_PATTERN));
static DOT_SEGMENT: LazyLock<Regex> = LazyLock::new(|| re(dot_segment_pattern!()));
static SYSTEM_TREE: LazyLock<Regex> = LazyLock::new(|| re(system_tree_pattern!()));
static URL: LazyLock<Regex> = LazyLock::new(|| re(URL_PATTERN));
static NO_PROXY_RE: LazyLock<Regex> = LazyLock::new(|| re(NO_PROXY_PATTERN));
static PERCENT: LazyLock<Regex> = LazyLock::new(|| re(percent_pattern!()));
const SYSTEM_DIRS: &[&str] =
    &["/var", "/var/lib", "/var/run", "/run", "/home", "/opt", "/mnt", "/srv", "/tmp", "/media"];

/// Check a whole object: the name that becomes a label value, then the spec.
pub fn validate_driver(hcd: &HardenedCsiDriver) -> Result<(), FieldErrors> {
    let mut errs = match validate(&hcd.spec) {
        Ok(()) => FieldErrors::default(),
        Err(e) => e,
    };
    if let Some(name) = &hcd.metadata.name
        && name.len() > 63
    {
        errs.0.insert(0, FieldError::with_value("metadata.name", name, rules::NAME_LENGTH.message));
    }
    if errs.0.is_empty() { Ok(()) } else { Err(errs) }
}
/// The kubelet's first back-off: a shorter grace would report one retried pull as Degraded.
const MIN_DEGRADED_AFTER: Duration = Duration::from_secs(10);

/// Check the whole spec. Returns every broken rule so a user can fix them in one go.
/// `spec.snapshots.controller`: the ranges the CRD schema also enforces.
fn snapshot_controller(c: &super::SnapshotControllerSpec, errs: &mut FieldErrors) {
    if !(1..=5).contains(&c.replicas) {
        errs.push("spec.snapshots.controller.replicas", format!("{} is out of range: 1 to 5", c.replicas));
    }
    if !(0..=10).contains(&c.log_level) {
        errs.push("spec.snapshots.controller.logLevel", format!("{} is out of range: 0 to 10", c.log_level));
    }
}

pub fn validate(spec: &HardenedCsiDriverSpec) -> Result<(), FieldErrors> {
    let mut errs = FieldErrors::default();
    if !is_dns_label(&spec.namespace) {
        errs.invalid(
            "spec.namespace",
            &spec.namespace,
            "not a valid namespace name (lowercase letters, digits and '-', at most 63)",
        );
    }
    if let Some(v) = &spec.version
        && versions::release(v).is_none()
    {
        let known: Vec<String> = versions::VERSIONS.iter().map(|v| format!("{v:?}")).collect();
        errs.invalid(
            "spec.version",
            v,
            format!(
                "not a driver release the operator knows; supported values: {} (hardened-csi-operator render \
                --list-versions), or leave it unset for the newest",
                known.join(", ")
            ),
        );
    }
    images(&spec.images, &mut errs);
    if spec.fips {
        fips_images(&spec.images, &mut errs);
    }
    aws(spec, &mut errs);
    controller(&spec.controller, &mut errs);
    snapshot_controller(&spec.snapshots.controller, &mut errs);
    node(&spec.node, &mut errs);
    storage_classes(&spec.storage_classes, &mut errs);
    snapshot_classes(&spec.volume_snapshot_classes, &mut errs);
    volume_attributes_classes(&spec.volume_attributes_classes, &mut errs);
    proxy(&spec.proxy, &mut errs);
    inventory(&spec.inventory, &mut errs);
    metrics(&spec.metrics, &mut errs);
    too_many(&mut errs, "spec.adoptObjects", spec.adopt_objects.len(), MAX_CLASSES);
    for (i, a) in spec.adopt_objects.iter().enumerate() {
        if let Some(name) = &a.name
            && !is_dns_subdomain(name)
        {
            errs.invalid(
                format!("spec.adoptObjects[{i}].name"),
                name,
                "not an object name (lowercase letters, digits, '-' and '.', at most 253); leave it out to take over \
                every object of the kind",
            );
        }
    }
    if spec.health.degraded_after.get() < MIN_DEGRADED_AFTER {
        errs.push(
            "spec.health.degradedAfter",
            format!(
                "{:?} is below the minimum of 10s (the kubelet's first back-off)",
                spec.health.degraded_after.as_str()
            ),
        );
    }
    if errs.0.is_empty() { Ok(()) } else { Err(errs) }
}

/// A list or map over its bound, in the API server's words for `maxItems`/`maxProperties`.
fn too_many(errs: &mut FieldErrors, field: &str, n: usize, max: usize) {
    if n > max {
        errs.push(field, format!("Too many: {n}: must have at most {max} items"));
    }
}

/// A string over its bound, in the API server's words for `maxLength` (which counts characters).
fn too_long(errs: &mut FieldErrors, field: &str, value: &str, max: usize) -> bool {
    let long = value.chars().count() > max;
    if long {
        errs.push(field, format!("Too long: may not be more than {max} bytes"));
    }
    long
}

fn images(images: &Images, errs: &mut FieldErrors) {
    if !too_long(errs, "spec.images.registry", &images.registry, MAX_REGISTRY) && !is_registry(&images.registry) {
        errs.invalid(
            "spec.images.registry",
            &images.registry,
            "must be a registry host (and optional port and path) without scheme or trailing '/', for example dhi.io",
        );
    }
    if !too_long(errs, "spec.images.mirror", &images.mirror, MAX_REGISTRY)
        && !images.mirror.is_empty()
        && !is_registry(&images.mirror)
    {
        errs.invalid(
            "spec.images.mirror",
            &images.mirror,
            "must be a registry host and path without scheme or trailing '/', for example registry.example.com/acme",
        );
    }
    too_many(errs, "spec.images.pullSecrets", images.pull_secrets.len(), MAX_PULL_SECRETS);
    for (i, s) in images.pull_secrets.iter().enumerate() {
        if !is_dns_subdomain(s) {
            errs.invalid(format!("spec.images.pullSecrets[{i}]"), s, rules::PULL_SECRET_NAMES.message);
        }
    }
    for (role, r) in image_roles(images) {
        let path = format!("spec.images.{role}");
        if let Some(repo) = &r.repository
            && (repo.is_empty()
                || repo.len() > MAX_REGISTRY
                || !repo
                    .split(['/', '.', '_', '-'])
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())))
        {
            errs.invalid(
                format!("{path}.repository"),
                repo,
                "not a valid repository (lowercase letters, digits, '.', '_', '-', '/', at most 255)",
            );
        }
        if let Some(tag) = &r.tag
            && (tag.is_empty()
                || tag.len() > 128
                || tag.starts_with(['.', '-'])
                || !tag.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
        {
            errs.invalid(format!("{path}.tag"), tag, "not a valid tag (letters, digits, '.', '_', '-', at most 128)");
        }
        if let Some(d) = &r.digest
            && !d.is_empty()
            && !is_sha256_digest(d)
        {
            errs.invalid(format!("{path}.digest"), d, rules::DIGEST.message);
        }
    }
}

/// With FIPS on, an override must still be a FIPS image (the `FIPS_IMAGES` rule).
fn fips_images(images: &Images, errs: &mut FieldErrors) {
    for (role, r) in image_roles(images) {
        let path = format!("spec.images.{role}");
        if let Some(tag) = &r.tag
            && !versions::is_fips_tag(tag)
        {
            errs.invalid(format!("{path}.tag"), tag, rules::FIPS_IMAGES.message);
        }
        if let Some(d) = r.digest.as_deref().filter(|d| !d.is_empty())
            && r.tag.is_none()
            && !versions::is_fips_digest(role, d)
        {
            errs.invalid(format!("{path}.digest"), d, rules::FIPS_IMAGES.message);
        }
    }
}

/// `host[:port][/path]` of an image registry or mirror (the CRD's pattern).
pub const REGISTRY_PATTERN: &str = "^[A-Za-z0-9-]+([.][A-Za-z0-9-]+)*(:[0-9]{1,5})?(/[a-z0-9._-]+)*$";

fn is_registry(s: &str) -> bool {
    static REGISTRY: LazyLock<Regex> = LazyLock::new(|| re(REGISTRY_PATTERN));
    REGISTRY.is_match(s)
}

/// The images by their field name under `spec.images`.
pub fn image_roles(images: &Images) -> [(&'static str, &ImageRef); 7] {
    [
        ("driver", &images.driver),
        ("provisioner", &images.provisioner),
        ("attacher", &images.attacher),
        ("snapshotter", &images.snapshotter),
        ("resizer", &images.resizer),
        ("livenessProbe", &images.liveness_probe),
        ("nodeDriverRegistrar", &images.node_driver_registrar),
    ]
}

fn aws(spec: &HardenedCsiDriverSpec, errs: &mut FieldErrors) {
    let aws = &spec.aws;
    if let Some(region) = &aws.region
        && !is_region(region)
    {
        errs.invalid("spec.aws.region", region, "not an AWS region name like us-east-1");
    }
    if spec.fips {
        match &aws.region {
            None => errs.push(
                "spec.aws.region",
                format!(
                    "required when spec.fips is true, one of the regions with FIPS endpoints: {}",
                    FIPS_REGIONS.join(", ")
                ),
            ),
            Some(r) if is_region(r) && !FIPS_REGIONS.contains(&r.as_str()) => errs.invalid(
                "spec.aws.region",
                r,
                format!(
                    "has no AWS FIPS endpoints, so spec.fips: true would make the driver fail; use one of {} or set \
                    spec.fips: false",
                    FIPS_REGIONS.join(", ")
                ),
            ),
            Some(_) => {}
        }
    }
    if let Some(id) = &aws.cluster_id
        && (id.is_empty()
            || id.len() > MAX_CLUSTER_ID
            || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    {
        errs.invalid("spec.aws.clusterId", id, "must be 1-100 letters, digits, '-', '_' or '.'");
    }
    let id = &aws.identity;
    let set = [id.irsa.is_some(), id.pod_identity.is_some(), id.secret_ref.is_some()].iter().filter(|s| **s).count();
    if set != 1 {
        errs.push("spec.aws.identity", format!("{} ({set} set)", rules::IDENTITY_ONE_OF.message));
    }
    if let Some(irsa) = &id.irsa
        && !is_role_arn(&irsa.role_arn)
    {
        errs.invalid(
            "spec.aws.identity.irsa.roleArn",
            &irsa.role_arn,
            "not an IAM role ARN like arn:aws:iam::111122223333:role/ebs-csi",
        );
    }
    if let Some(s) = &id.secret_ref
        && !is_dns_subdomain(&s.name)
    {
        errs.invalid("spec.aws.identity.secretRef.name", &s.name, "not a valid Secret name");
    }
    too_many(errs, "spec.aws.extraTags", aws.extra_tags.len(), MAX_EXTRA_TAGS);
    for (key, value) in &aws.extra_tags {
        let field = format!("spec.aws.extraTags[{key}]");
        if is_reserved_tag(key) {
            errs.invalid(&field, key, rules::TAGS_RESERVED.message);
        } else if !is_tag_key(key) {
            errs.invalid(&field, key, rules::TAG_KEYS.message);
        }
        if !too_long(errs, &field, value, 256) && !TAG_VALUE.is_match(value) {
            errs.invalid(&field, value, rules::TAG_VALUES.message);
        }
    }
    if aws.retag_existing_volumes {
        if aws.cluster_id.is_none() {
            errs.push("spec.aws.retagExistingVolumes", rules::RETAG_CLUSTER_ID.message);
        }
        if id.secret_ref.is_some() {
            errs.push("spec.aws.retagExistingVolumes", rules::RETAG_IDENTITY.message);
        }
        if !spec.inventory.enabled {
            errs.push("spec.aws.retagExistingVolumes", rules::RETAG_INVENTORY.message);
        }
    }
    if let Some(e) = &aws.ec2_endpoint
        && !too_long(errs, "spec.aws.ec2Endpoint", e, MAX_URL)
        && !URL.is_match(e)
    {
        errs.invalid("spec.aws.ec2Endpoint", e, rules::EC2_ENDPOINT.message);
    }
    if let Some(e) = &aws.sts_endpoint
        && !too_long(errs, "spec.aws.stsEndpoint", e, MAX_URL)
        && !URL.is_match(e)
    {
        errs.invalid("spec.aws.stsEndpoint", e, rules::STS_ENDPOINT.message);
    }
    if let Some(e) = &aws.kms_endpoint
        && !too_long(errs, "spec.aws.kmsEndpoint", e, MAX_URL)
        && !URL.is_match(e)
    {
        errs.invalid("spec.aws.kmsEndpoint", e, rules::KMS_ENDPOINT.message);
    }
    let mut keys: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = &id.secret_ref {
        keys.push(("spec.aws.identity.secretRef.keyId", &s.key_id));
        keys.push(("spec.aws.identity.secretRef.accessKey", &s.access_key));
        if let Some(t) = &s.session_token {
            keys.push(("spec.aws.identity.secretRef.sessionToken", t));
        }
    }
    if let Some(b) = &aws.ca_bundle {
        if !is_dns_subdomain(&b.name) {
            errs.invalid("spec.aws.caBundle.name", &b.name, "not a valid ConfigMap name");
        }
        keys.push(("spec.aws.caBundle.key", &b.key));
    }
    for (field, key) in keys {
        if key.is_empty() || key.len() > 253 || !key.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
            errs.invalid(field, key, "not a valid key: 1-253 letters, digits, '-', '_' or '.'");
        }
    }
}

pub fn is_reserved_tag(key: &str) -> bool {
    key == "CSIVolumeName"
        || key == "CSIVolumeSnapshotName"
        || key.starts_with("kubernetes.io")
        || key.starts_with("ebs.csi.aws.com/")
}

/// The EBS tag key grammar and the `--extra-tags` syntax (no `=`, no `,`), `aws:` reserved.
pub fn is_tag_key(key: &str) -> bool {
    TAG_KEY.is_match(key) && !key.to_ascii_lowercase().starts_with("aws:")
}

/// The flag name of an argument: `--name=value`, `--name`, `-name` all give `name`.
pub fn flag_name(arg: &str) -> &str {
    let bare = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).unwrap_or(arg);
    bare.split_once('=').map_or(bare, |(name, _)| name)
}

fn controller(c: &ControllerSpec, errs: &mut FieldErrors) {
    if !(1..=10).contains(&c.replicas) {
        errs.push("spec.controller.replicas", format!("{} is out of range: 1 to 10", c.replicas));
    }
    if !(0..=10).contains(&c.log_level) {
        errs.push("spec.controller.logLevel", format!("{} is out of range: 0 to 10", c.log_level));
    }
    priority_class("spec.controller.priorityClassName", &c.priority_class_name, errs);
    too_many(errs, "spec.controller.nodeSelector", c.node_selector.len(), MAX_SELECTOR_LABELS);
    let tolerations = c.tolerations.as_ref().map_or(0, Vec::len);
    too_many(errs, "spec.controller.tolerations", tolerations, MAX_TOLERATIONS);
    too_many(
        errs,
        "spec.controller.topologySpreadConstraints",
        c.topology_spread_constraints.len(),
        MAX_SPREAD_CONSTRAINTS,
    );
    extra_args(
        "spec.controller.extraArgs",
        &c.extra_args,
        (&ARG, rules::EXTRA_ARGS_FORM.message),
        (&MANAGED_ARG, rules::EXTRA_ARGS_MANAGED.message),
        errs,
    );
    let p = &c.pod_disruption_budget;
    if p.max_unavailable.is_some() && p.min_available.is_some() {
        errs.push("spec.controller.podDisruptionBudget", rules::PDB_EXCLUSIVE.message);
    }
    for (name, v) in [("maxUnavailable", &p.max_unavailable), ("minAvailable", &p.min_available)] {
        let field = format!("spec.controller.podDisruptionBudget.{name}");
        match v {
            Some(IntOrString::Int(i)) if *i < 0 => errs.push(field, format!("{i}: {}", rules::PDB_VALUE.message)),
            Some(IntOrString::String(s)) if !PDB_PERCENT.is_match(s) => {
                errs.invalid(field, s, rules::PDB_VALUE.message)
            }
            _ => {}
        }
    }
    let s = &c.sidecars;
    for (name, sc) in [
        ("provisioner", &s.provisioner),
        ("attacher", &s.attacher),
        ("snapshotter", &s.snapshotter),
        ("resizer", &s.resizer),
        ("livenessProbe", &s.liveness_probe),
    ] {
        sidecar(&format!("spec.controller.sidecars.{name}"), sc, errs);
    }
    pod_options(
        "spec.controller",
        PodOptions {
            annotations: &c.pod_annotations,
            labels: &c.pod_labels,
            env: &c.env,
            env_from: c.env_from.len(),
            dns: c.dns_config.as_ref(),
            revision_history_limit: c.revision_history_limit,
            grace: c.termination_grace_period_seconds,
        },
        errs,
    );
}

/// A list of extra flags: bounded, each a flag, none the operator manages.
fn extra_args(
    path: &str,
    args: &[String],
    (form, form_message): (&Regex, &str),
    (managed, managed_message): (&Regex, &str),
    errs: &mut FieldErrors,
) {
    too_many(errs, path, args.len(), MAX_EXTRA_ARGS);
    for (i, a) in args.iter().enumerate() {
        let field = format!("{path}[{i}]");
        if too_long(errs, &field, a, MAX_ARG_LENGTH) {
            continue;
        }
        if !form.is_match(a) {
            errs.invalid(field, a, form_message);
        } else if managed.is_match(a) {
            errs.invalid(field, a, format!("--{} is set by the operator: {managed_message}", flag_name(a)));
        }
    }
}

fn sidecar(path: &str, s: &super::workload::SidecarSpec, errs: &mut FieldErrors) {
    extra_args(
        &format!("{path}.extraArgs"),
        &s.extra_args,
        (&ARG, rules::SIDECAR_ARGS_FORM.message),
        (&SIDECAR_MANAGED_ARG, rules::SIDECAR_ARGS_MANAGED.message),
        errs,
    );
    if let Some(l) = s.log_level
        && !(0..=10).contains(&l)
    {
        errs.push(format!("{path}.logLevel"), format!("{l} is out of range: 0 to 10"));
    }
}

/// The pod-level knobs the controller and the node plugin share.
struct PodOptions<'a> {
    annotations: &'a Map,
    labels: &'a Map,
    env: &'a [k8s_openapi::api::core::v1::EnvVar],
    env_from: usize,
    dns: Option<&'a k8s_openapi::api::core::v1::PodDNSConfig>,
    revision_history_limit: i32,
    grace: Option<i64>,
}

pub const MAX_POD_ANNOTATIONS: usize = 64;
pub const MAX_POD_LABELS: usize = 32;
pub const MAX_ENV: usize = 64;
pub const MAX_ENV_FROM: usize = 16;

fn pod_options(path: &str, o: PodOptions<'_>, errs: &mut FieldErrors) {
    metadata_maps(path, ("podLabels", o.labels), ("podAnnotations", o.annotations), errs);
    too_many(errs, &format!("{path}.env"), o.env.len(), MAX_ENV);
    let managed = managed_env_names();
    for (i, e) in o.env.iter().enumerate() {
        let field = format!("{path}.env[{i}].name");
        if managed.contains(&e.name.as_str()) {
            errs.invalid(&field, &e.name, format!("{} is set by the operator: {}", e.name, rules::ENV_MANAGED.message));
        } else if !ENV_NAME.is_match(&e.name) {
            errs.invalid(
                &field,
                &e.name,
                "not a valid environment variable name: letters, digits, '_', '-', '.', not starting with a digit",
            );
        }
        if o.env[..i].iter().any(|other| other.name == e.name) {
            errs.invalid(&field, &e.name, "appears more than once: environment variable names must be unique");
        }
    }
    too_many(errs, &format!("{path}.envFrom"), o.env_from, MAX_ENV_FROM);
    if let Some(d) = o.dns {
        let nameservers = d.nameservers.as_ref().map_or(0, Vec::len);
        let searches = d.searches.as_ref().map_or(0, Vec::len);
        if nameservers > 3 || searches > 32 {
            errs.push(
                format!("{path}.dnsConfig"),
                format!("{} ({nameservers} nameservers, {searches} searches)", rules::DNS_CONFIG.message),
            );
        }
    }
    if !(0..=100).contains(&o.revision_history_limit) {
        errs.push(
            format!("{path}.revisionHistoryLimit"),
            format!("{} is out of range: 0 to 100", o.revision_history_limit),
        );
    }
    if let Some(g) = o.grace
        && !(0..=3600).contains(&g)
    {
        errs.push(format!("{path}.terminationGracePeriodSeconds"), format!("{g} is out of range: 0 to 3600"));
    }
}

/// Labels and annotations of a class: the same rules as pod labels, and the annotations the
/// operator sets itself refused.
fn class_metadata(path: &str, labels: &Map, annotations: &Map, errs: &mut FieldErrors) {
    let reserved: Vec<&str> = reserved_class_annotations!().split(',').map(|n| n.trim().trim_matches('\'')).collect();
    for k in annotations.keys() {
        if reserved.contains(&k.as_str()) {
            errs.invalid(format!("{path}.annotations[{k}]"), k, rules::CLASS_ANNOTATIONS.message);
        }
    }
    metadata_maps(path, ("labels", labels), ("annotations", annotations), errs);
}

type Map = std::collections::BTreeMap<String, String>;

/// Labels and annotations a user adds to an object: bounded, valid keys and label values, none
/// of the operator's labels.
fn metadata_maps(path: &str, (ln, labels): (&str, &Map), (an, annotations): (&str, &Map), errs: &mut FieldErrors) {
    too_many(errs, &format!("{path}.{an}"), annotations.len(), MAX_POD_ANNOTATIONS);
    for (k, v) in annotations {
        let field = format!("{path}.{an}[{k}]");
        if !is_qualified_name(k) {
            errs.invalid(&field, k, rules::ANNOTATION_KEYS.message);
        }
        too_long(errs, &field, v, 4096);
    }
    too_many(errs, &format!("{path}.{ln}"), labels.len(), MAX_POD_LABELS);
    let reserved = reserved_pod_labels();
    for (k, v) in labels {
        let field = format!("{path}.{ln}[{k}]");
        if reserved.contains(&k.as_str()) {
            errs.invalid(&field, k, rules::POD_LABELS_RESERVED.message);
        } else if !is_qualified_name(k) {
            errs.invalid(&field, k, rules::LABEL_KEYS.message);
        }
        if !too_long(errs, &field, v, 63) && !LABEL_VALUE.is_match(v) {
            errs.invalid(&field, v, rules::LABEL_VALUES.message);
        }
    }
}

static SCRAPE_INTERVAL: LazyLock<Regex> = LazyLock::new(|| re("^([0-9]{1,4}h)?([0-9]{1,4}m)?([0-9]{1,6}s)?$"));
static ZERO_INTERVAL: LazyLock<Regex> = LazyLock::new(|| re("^(0+[hms])+$"));

/// The ServiceMonitors: they scrape the metrics Services, so they need them; a Prometheus
/// interval; labels as every other label map.
fn metrics(m: &crate::crd::MetricsSpec, errs: &mut FieldErrors) {
    let sm = &m.service_monitor;
    if sm.enabled && !m.enabled {
        errs.invalid("spec.metrics", "serviceMonitor.enabled: true", rules::SERVICE_MONITOR_METRICS.message);
    }
    let field = "spec.metrics.serviceMonitor.interval";
    if !too_long(errs, field, &sm.interval, 32)
        && (sm.interval.is_empty() || !SCRAPE_INTERVAL.is_match(&sm.interval) || ZERO_INTERVAL.is_match(&sm.interval))
    {
        errs.invalid(field, &sm.interval, rules::SCRAPE_INTERVAL.message);
    }
    metadata_maps("spec.metrics.serviceMonitor", ("labels", &sm.labels), ("annotations", &Map::new()), errs);
}

/// A label or annotation key: `[prefix/]name` (the CRD's pattern).
pub fn is_qualified_name(key: &str) -> bool {
    LABEL_KEY.is_match(key)
}

fn priority_class(field: &str, name: &str, errs: &mut FieldErrors) {
    if !is_dns_subdomain(name) {
        errs.invalid(field, name, "not a valid PriorityClass name (lowercase letters, digits, '-', '.', at most 253)");
    }
}

fn node(n: &NodeSpec, errs: &mut FieldErrors) {
    if n.volume_attach_limit.is_some() && n.reserved_volume_attachments.is_some() {
        errs.push("spec.node", rules::ATTACH_EXCLUSIVE.message);
    }
    if let Some(l) = n.volume_attach_limit
        && !(1..=128).contains(&l)
    {
        errs.push("spec.node.volumeAttachLimit", format!("{l} is out of range: 1 to 128"));
    }
    if let Some(r) = n.reserved_volume_attachments
        && !(0..=127).contains(&r)
    {
        errs.push("spec.node.reservedVolumeAttachments", format!("{r} is out of range: 0 to 127"));
    }
    priority_class("spec.node.priorityClassName", &n.priority_class_name, errs);
    too_many(errs, "spec.node.nodeSelector", n.node_selector.len(), MAX_SELECTOR_LABELS);
    too_many(errs, "spec.node.tolerations", n.tolerations.len(), MAX_TOLERATIONS);
    let path = &n.kubelet_path;
    if !too_long(errs, "spec.node.kubeletPath", path, MAX_PATH) {
        if !PATH.is_match(path) || DOT_SEGMENT.is_match(path) {
            errs.invalid("spec.node.kubeletPath", path, rules::KUBELET_PATH_FORM.message);
        }
        if SYSTEM_TREE.is_match(path) || SYSTEM_DIRS.contains(&path.as_str()) {
            errs.invalid("spec.node.kubeletPath", path, rules::KUBELET_PATH_SYSTEM.message);
        }
    }
    if !(0..=10).contains(&n.log_level) {
        errs.push("spec.node.logLevel", format!("{} is out of range: 0 to 10", n.log_level));
    }
    extra_args(
        "spec.node.extraArgs",
        &n.extra_args,
        (&ARG, rules::EXTRA_ARGS_FORM.message),
        (&NODE_MANAGED_ARG, rules::NODE_ARGS_MANAGED.message),
        errs,
    );
    let s = &n.sidecars;
    for (name, sc) in [("nodeDriverRegistrar", &s.node_driver_registrar), ("livenessProbe", &s.liveness_probe)] {
        sidecar(&format!("spec.node.sidecars.{name}"), sc, errs);
    }
    pod_options(
        "spec.node",
        PodOptions {
            annotations: &n.pod_annotations,
            labels: &n.pod_labels,
            env: &n.env,
            env_from: n.env_from.len(),
            dns: n.dns_config.as_ref(),
            revision_history_limit: n.revision_history_limit,
            grace: Some(n.termination_grace_period_seconds),
        },
        errs,
    );
    match &n.max_unavailable {
        IntOrString::Int(i) if *i < 1 => {
            errs.push("spec.node.maxUnavailable", format!("{i}: {}", rules::MAX_UNAVAILABLE.message))
        }
        IntOrString::String(s) if !PERCENT.is_match(s) => {
            errs.invalid("spec.node.maxUnavailable", s, rules::MAX_UNAVAILABLE.message)
        }
        _ => {}
    }
}

/// The rules every class list shares: valid, unique names and at most one default.
fn class_names(field: &str, kind: &str, classes: &[(&str, bool)], errs: &mut FieldErrors) {
    too_many(errs, &format!("spec.{field}"), classes.len(), MAX_CLASSES);
    let defaults: Vec<&str> = classes.iter().filter(|(_, d)| *d).map(|(n, _)| *n).collect();
    if defaults.len() > 1 {
        errs.push(
            format!("spec.{field}"),
            format!("at most one {kind} may be the default; {} are: {}", defaults.len(), defaults.join(", ")),
        );
    }
    for (i, (name, _)) in classes.iter().enumerate() {
        let path = format!("spec.{field}[{i}].name");
        if !is_dns_subdomain(name) {
            errs.invalid(path.clone(), name, format!("not a valid {kind} name"));
        }
        if classes[..i].iter().any(|(other, _)| other == name) {
            errs.invalid(path, name, format!("appears more than once: {kind} names must be unique"));
        }
    }
}

fn parameters(path: &str, params: &std::collections::BTreeMap<String, String>, errs: &mut FieldErrors) {
    too_many(errs, &format!("{path}.parameters"), params.len(), MAX_PARAMETERS);
    for (key, value) in params {
        too_long(errs, &format!("{path}.parameters[{key}]"), value, MAX_PARAMETER_VALUE);
    }
}

fn storage_classes(classes: &[StorageClassSpec], errs: &mut FieldErrors) {
    let names: Vec<(&str, bool)> = classes.iter().map(|c| (c.name.as_str(), c.default)).collect();
    class_names("storageClasses", "StorageClass", &names, errs);
    for (i, c) in classes.iter().enumerate() {
        let path = format!("spec.storageClasses[{i}]");
        let t = c.volume_type;
        iops_and_throughput(&path, Some(t), c.iops, c.throughput, errs);
        if let Some(k) = &c.kms_key_id {
            too_long(errs, &format!("{path}.kmsKeyId"), k, MAX_KMS_KEY);
            if !c.encrypted {
                errs.push(format!("{path}.kmsKeyId"), rules::KMS_NEEDS_ENCRYPTION.message);
            }
        }
        parameters(&path, &c.parameters, errs);
        for key in c.parameters.keys() {
            let lower = key.to_ascii_lowercase();
            if let Some((_, field)) = STORAGE_CLASS_FIELD_PARAMETERS.iter().find(|(p, _)| *p == lower) {
                errs.push(format!("{path}.parameters[{key}]"), format!("set it with {path}.{field} instead"));
            } else if !known_parameter(key, STORAGE_CLASS_PARAMETERS, PROVISIONER_PARAMETERS) {
                errs.push(
                    format!("{path}.parameters[{key}]"),
                    format!(
                        "not a parameter driver 1.64 accepts (it would fail every CreateVolume); known: {}, \
                        tagSpecification_<n>, csi.storage.k8s.io/<provisioner secret keys>",
                        STORAGE_CLASS_PARAMETERS.join(", ")
                    ),
                );
            }
        }
        class_metadata(&path, &c.labels, &c.annotations, errs);
        too_many(errs, &format!("{path}.mountOptions"), c.mount_options.len(), MAX_MOUNT_OPTIONS);
        for (j, o) in c.mount_options.iter().enumerate() {
            too_long(errs, &format!("{path}.mountOptions[{j}]"), o, MAX_MOUNT_OPTION);
        }
        too_many(errs, &format!("{path}.allowedTopologies"), c.allowed_topologies.len(), MAX_TOPOLOGIES);
    }
}

/// `iops` and `throughput` against the volume type (None: a class that keeps the volume's type;
/// then only the bounds over every type apply).
fn iops_and_throughput(path: &str, t: Option<VolumeType>, iops: Option<i64>, tp: Option<i64>, errs: &mut FieldErrors) {
    let (lo_all, hi_all) = (100, 256_000);
    if let Some(iops) = iops {
        match t.map(|t| (t, iops_bounds(t))) {
            Some((t, None)) => {
                errs.push(format!("{path}.iops"), format!("{}, not {}", rules::IOPS_TYPE.message, t.as_str()))
            }
            Some((t, Some((lo, hi)))) if !(lo..=hi).contains(&iops) => {
                errs.push(format!("{path}.iops"), format!("{iops} for {}: {}", t.as_str(), rules::IOPS_RANGE.message))
            }
            None if !(lo_all..=hi_all).contains(&iops) => {
                errs.push(format!("{path}.iops"), format!("{iops} is out of range: {lo_all} to {hi_all}"))
            }
            _ => {}
        }
    }
    if let Some(tp) = tp {
        let (lo, hi) = THROUGHPUT_BOUNDS;
        match t {
            Some(t) if t != VolumeType::Gp3 => errs
                .push(format!("{path}.throughput"), format!("{}, not {}", rules::THROUGHPUT_TYPE.message, t.as_str())),
            _ if !(lo..=hi).contains(&tp) => {
                errs.push(format!("{path}.throughput"), format!("{tp} is out of range: {lo} to {hi} MiB/s"))
            }
            _ => {}
        }
    }
}

static VAC_PARAMETER: LazyLock<Regex> = LazyLock::new(|| re(vac_parameter_pattern!()));

fn volume_attributes_classes(classes: &[VolumeAttributesClassSpec], errs: &mut FieldErrors) {
    too_many(errs, "spec.volumeAttributesClasses", classes.len(), MAX_CLASSES);
    for (i, c) in classes.iter().enumerate() {
        let path = format!("spec.volumeAttributesClasses[{i}]");
        if !is_dns_subdomain(&c.name) {
            errs.invalid(format!("{path}.name"), &c.name, "not a valid VolumeAttributesClass name");
        }
        if classes[..i].iter().any(|o| o.name == c.name) {
            errs.invalid(format!("{path}.name"), &c.name, rules::VAC_UNIQUE.message);
        }
        if c.volume_type.is_none() && c.iops.is_none() && c.throughput.is_none() && c.parameters.is_empty() {
            errs.push(path.clone(), rules::VAC_NOT_EMPTY.message);
        }
        iops_and_throughput(&path, c.volume_type, c.iops, c.throughput, errs);
        parameters(&path, &c.parameters, errs);
        for (key, value) in &c.parameters {
            if !VAC_PARAMETER.is_match(key) || (key.starts_with("tagSpecification") && !value.contains('=')) {
                errs.invalid(format!("{path}.parameters[{key}]"), value, rules::VAC_PARAMETERS.message);
            }
        }
        class_metadata(&path, &c.labels, &c.annotations, errs);
    }
}

fn snapshot_classes(classes: &[VolumeSnapshotClassSpec], errs: &mut FieldErrors) {
    let names: Vec<(&str, bool)> = classes.iter().map(|c| (c.name.as_str(), c.default)).collect();
    class_names("volumeSnapshotClasses", "VolumeSnapshotClass", &names, errs);
    for (i, c) in classes.iter().enumerate() {
        let path = format!("spec.volumeSnapshotClasses[{i}]");
        parameters(&path, &c.parameters, errs);
        for key in c.parameters.keys() {
            if !known_parameter(key, SNAPSHOT_CLASS_PARAMETERS, SNAPSHOTTER_PARAMETERS) {
                errs.push(
                    format!("{path}.parameters[{key}]"),
                    format!(
                        "not a parameter driver 1.64 accepts (it would fail every CreateSnapshot); known: {}, \
                        tagSpecification_<n>, csi.storage.k8s.io/<snapshotter secret keys>",
                        SNAPSHOT_CLASS_PARAMETERS.join(", ")
                    ),
                );
            }
        }
        class_metadata(&path, &c.labels, &c.annotations, errs);
    }
}

fn proxy(p: &ProxySpec, errs: &mut FieldErrors) {
    if let Some(url) = &p.http_proxy
        && !too_long(errs, "spec.proxy.httpProxy", url, MAX_URL)
        && !URL.is_match(url)
    {
        errs.invalid("spec.proxy.httpProxy", url, rules::HTTP_PROXY.message);
    }
    if let Some(n) = &p.no_proxy
        && !too_long(errs, "spec.proxy.noProxy", n, MAX_NO_PROXY)
        && !NO_PROXY_RE.is_match(n)
    {
        errs.invalid("spec.proxy.noProxy", n, rules::NO_PROXY.message);
    }
}

fn inventory(inv: &InventorySpec, errs: &mut FieldErrors) {
    let checks = [
        ("spec.inventory.interval", &inv.interval, INTERVAL_BOUNDS, rules::INTERVAL.message),
        (
            "spec.inventory.orphanGracePeriod",
            &inv.orphan_grace_period,
            ORPHAN_GRACE_BOUNDS,
            rules::ORPHAN_GRACE.message,
        ),
        ("spec.inventory.stuckThreshold", &inv.stuck_threshold, STUCK_THRESHOLD_BOUNDS, rules::STUCK_THRESHOLD.message),
    ];
    for (field, d, (min, max), message) in checks {
        if d.get() < min || d.get() > max {
            errs.invalid(field, d.as_str(), message);
        }
    }
}

fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)))
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain (the names of Secrets, classes, PriorityClasses), as the CRD's pattern.
pub const DNS_SUBDOMAIN_PATTERN: &str = dns_subdomain_pattern!();

fn is_dns_subdomain(s: &str) -> bool {
    static SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| re(DNS_SUBDOMAIN_PATTERN));
    s.len() <= 253 && SUBDOMAIN.is_match(s)
}

/// Exactly the CRD's pattern `^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$`.
fn is_region(s: &str) -> bool {
    static REGION: LazyLock<Regex> = LazyLock::new(|| re(REGION_PATTERN));
    REGION.is_match(s)
}

pub const REGION_PATTERN: &str = "^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$";

fn is_role_arn(s: &str) -> bool {
    let mut it = s.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) =
        (it.next(), it.next(), it.next(), it.next(), it.next(), it.next())
    else {
        return false;
    };
    partition.starts_with("aws")
        && partition.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && resource
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@/-".contains(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_and_regions() {
        assert!(is_role_arn("arn:aws:iam::111122223333:role/ebs-csi"));
        assert!(is_role_arn("arn:aws-us-gov:iam::111122223333:role/path/ebs"));
        assert!(!is_role_arn("arn:aws:iam::1111:role/x"));
        assert!(!is_role_arn("arn:aws:iam::111122223333:user/x"));
        assert!(!is_role_arn("arn:aws:iam::111122223333:role/$(AWS_SECRET_ACCESS_KEY)"));
        assert!(is_region("us-east-1") && is_region("us-gov-west-1") && is_region("ap-southeast-2"));
        assert!(!is_region("useast1") && !is_region("US-EAST-1"));
    }

    #[test]
    fn urls_are_redacted_and_long_values_cut() {
        assert_eq!(redact_url("http://u:secret@proxy:3128"), "http://***@proxy:3128");
        assert_eq!(redact_url("http://u:p@ss@proxy:3128/x@y"), "http://***@proxy:3128/x@y");
        assert_eq!(redact_url("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(show("http://u:$(AWS_SECRET_ACCESS_KEY)@proxy:3128"), "\"http://***@proxy:3128\"");
        let long = show(&"a".repeat(500));
        assert!(long.ends_with("... (500 characters)") && long.len() < 110, "{long}");
        assert_eq!(show("a\nb"), "\"a\\nb\"");
        assert_eq!(
            redact_credentials("x[http://a:b@p:1]: \"https://c@q/x@y\" ftp://r"),
            "x[http://***@p:1]: \"https://***@q/x@y\" ftp://r"
        );
    }

    #[test]
    fn the_fips_rule_lists_every_fips_digest_of_the_table() {
        let mut table: Vec<String> = versions::RELEASES
            .iter()
            .flat_map(|r| r.images().into_iter().filter_map(|(_, p)| p.fips_digest))
            .map(|d| format!("'{d}'"))
            .collect();
        table.sort();
        table.dedup();
        assert_eq!(fips_digests_cel!(), format!("[{}]", table.join(", ")));
        let fips = Regex::new(fips_tag_pattern!()).expect("pattern");
        for t in ["1.64.0-fips", "1.64.0-debian13-fips", "1.64.0-fips-dev", "1.64.0", "1.64.0-fipsy", "fips1"] {
            assert_eq!(fips.is_match(t), versions::is_fips_tag(t), "{t}");
        }
    }

    #[test]
    fn flag_names_in_every_form() {
        for a in ["--v=5", "-v=5", "--v", "-v"] {
            assert_eq!(flag_name(a), "v", "{a}");
            assert!(MANAGED_ARG.is_match(a), "{a}");
        }
        for a in ["--vv", "--verbose", "--extra-tags-x=1", "--endpointx"] {
            assert!(!MANAGED_ARG.is_match(a), "{a}");
        }
    }

    #[test]
    fn kubelet_paths() {
        let ok = ["/var/lib/kubelet", "/var/lib/k0s/kubelet", "/var/snap/microk8s/common/var/lib/kubelet", "/data/k"];
        for p in ok {
            assert!(PATH.is_match(p) && !DOT_SEGMENT.is_match(p) && !SYSTEM_TREE.is_match(p), "{p}");
        }
        for p in ["/", "//var/lib/kubelet", "/var/lib/kubelet/", "/var/../etc", "/var/./lib", "var/lib", "/a b"] {
            assert!(!PATH.is_match(p) || DOT_SEGMENT.is_match(p), "{p}");
        }
        for p in ["/etc", "/etc/kubernetes", "/proc/1", "/sys", "/dev/sda", "/boot", "/root", "/usr/lib/x"] {
            assert!(SYSTEM_TREE.is_match(p), "{p}");
        }
        assert!(!SYSTEM_TREE.is_match("/etcetera") && !SYSTEM_TREE.is_match("/var/lib/etc"));
    }

    #[test]
    fn every_cel_rule_pattern_compiles_in_rust() {
        for p in [
            TAG_KEY_PATTERN,
            TAG_VALUE_PATTERN,
            arg_pattern!(),
            managed_arg_pattern!(),
            KUBELET_PATH_PATTERN,
            dot_segment_pattern!(),
            system_tree_pattern!(),
            URL_PATTERN,
            NO_PROXY_PATTERN,
            percent_pattern!(),
            fips_tag_pattern!(),
            vac_parameter_pattern!(),
            REGION_PATTERN,
            REGISTRY_PATTERN,
            DNS_SUBDOMAIN_PATTERN,
            sidecar_managed_arg_pattern!(),
            node_managed_arg_pattern!(),
            LABEL_KEY_PATTERN,
            LABEL_VALUE_PATTERN,
            pdb_percent_pattern!(),
        ] {
            assert!(Regex::new(p).is_ok(), "{p}");
            assert!(!p.contains('\\') && !p.contains('\''), "{p} must fit a CEL string literal as is");
        }
    }
}

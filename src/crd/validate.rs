//! Cross-field and value rules of the spec, in Rust. The API server enforces the same rules as
//! CEL and schema patterns; these run too so `render` and the reconciler can name the field of
//! an object that bypassed admission (or a file given to `render`) and what would be valid.

use std::fmt;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::spec::*;

/// One rule broken: the field path (`spec.aws.identity`) and what is wrong / what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
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
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }
}

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

/// StorageClass parameters the driver understands, besides those with their own field
/// (`type`, `encrypted`, `kmsKeyId`, `iops`, `throughput`, `csi.storage.k8s.io/fstype`).
pub const STORAGE_CLASS_PARAMETERS: &[&str] = &[
    "iopsPerGB",
    "allowAutoIOPSPerGBIncrease",
    "blockExpress",
    "blockSize",
    "inodeSize",
    "bytesPerInode",
    "numberOfInodes",
    "ext4BigAlloc",
    "ext4ClusterSize",
    "volumeInitializationRate",
    "outpostArn",
];
const STORAGE_CLASS_PARAMETER_PREFIXES: &[&str] = &["tagSpecification_", "csi.storage.k8s.io/"];
const STORAGE_CLASS_FIELD_PARAMETERS: &[(&str, &str)] = &[
    ("type", "type"),
    ("encrypted", "encrypted"),
    ("kmsKeyId", "kmsKeyId"),
    ("iops", "iops"),
    ("throughput", "throughput"),
    ("csi.storage.k8s.io/fstype", "fsType"),
];
/// VolumeSnapshotClass parameters the driver understands.
pub const SNAPSHOT_CLASS_PARAMETERS: &[&str] = &[
    "fastSnapshotRestoreAvailabilityZones",
    "outpostArn",
    "lockMode",
    "lockDuration",
    "lockExpirationDate",
    "lockCoolOffPeriod",
];
/// Driver flags the operator sets itself; `controller.extraArgs` may not repeat them.
const MANAGED_CONTROLLER_FLAGS: &[&str] = &[
    "--endpoint",
    "--k8s-tag-cluster-id",
    "--extra-tags",
    "--v",
    "--logging-format",
    "--http-endpoint",
    "--user-agent-extra",
];
const MIN_INVENTORY_INTERVAL: Duration = Duration::from_secs(60);
/// The kubelet's first back-off: a shorter grace would report one retried pull as Degraded.
const MIN_DEGRADED_AFTER: Duration = Duration::from_secs(10);

/// Check the whole spec. Returns every broken rule so a user can fix them in one go.
pub fn validate(spec: &HardenedCsiDriverSpec) -> Result<(), FieldErrors> {
    let mut errs = FieldErrors::default();
    if !is_dns_label(&spec.namespace) {
        errs.push(
            "spec.namespace",
            format!(
                "{:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63)",
                spec.namespace
            ),
        );
    }
    images(&spec.images, &mut errs);
    aws(spec, &mut errs);
    controller(&spec.controller, &mut errs);
    node(&spec.node, &mut errs);
    storage_classes(&spec.storage_classes, &mut errs);
    snapshot_classes(&spec.volume_snapshot_classes, &mut errs);
    if let Some(p) = &spec.proxy.http_proxy
        && !(p.starts_with("http://") || p.starts_with("https://"))
    {
        errs.push("spec.proxy.httpProxy", format!("{p:?} must be an http:// or https:// URL"));
    }
    inventory(&spec.inventory, &mut errs);
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

fn images(images: &Images, errs: &mut FieldErrors) {
    if images.registry.is_empty() || images.registry.contains("://") || images.registry.ends_with('/') {
        errs.push(
            "spec.images.registry",
            "must be a registry host (and optional path) without scheme or trailing '/', for example dhi.io",
        );
    }
    if images.mirror.contains("://") || images.mirror.ends_with('/') {
        errs.push(
            "spec.images.mirror",
            "must be a registry host and path without scheme or trailing '/', for example registry.example.com/acme",
        );
    }
    for (i, s) in images.pull_secrets.iter().enumerate() {
        if !is_dns_subdomain(s) {
            errs.push(format!("spec.images.pullSecrets[{i}]"), format!("{s:?} is not a valid Secret name"));
        }
    }
    for (role, r) in image_roles(images) {
        let path = format!("spec.images.{role}");
        if let Some(repo) = &r.repository
            && (repo.is_empty()
                || !repo
                    .split(['/', '.', '_', '-'])
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())))
        {
            errs.push(
                format!("{path}.repository"),
                format!("{repo:?} is not a valid repository (lowercase letters, digits, '.', '_', '-', '/')"),
            );
        }
        if let Some(tag) = &r.tag
            && (tag.is_empty()
                || tag.len() > 128
                || tag.starts_with(['.', '-'])
                || !tag.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
        {
            errs.push(
                format!("{path}.tag"),
                format!("{tag:?} is not a valid tag (letters, digits, '.', '_', '-', at most 128)"),
            );
        }
        if let Some(d) = &r.digest
            && !d.is_empty()
            && !is_sha256_digest(d)
        {
            errs.push(format!("{path}.digest"), format!("{d:?} must be sha256: followed by 64 lowercase hex digits"));
        }
    }
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
        errs.push("spec.aws.region", format!("{region:?} is not an AWS region name like us-east-1"));
    }
    if spec.fips {
        match &aws.region {
            None => errs.push(
                "spec.aws.region",
                format!(
                    "required when spec.fips is true, one of the regions with \
                FIPS endpoints: {}",
                    FIPS_REGIONS.join(", ")
                ),
            ),
            Some(r) if !FIPS_REGIONS.contains(&r.as_str()) => errs.push(
                "spec.aws.region",
                format!(
                    "{r:?} has no AWS FIPS endpoints, so spec.fips: true would make the driver fail; use one of \
                    {} or set spec.fips: false",
                    FIPS_REGIONS.join(", ")
                ),
            ),
            Some(_) => {}
        }
    }
    if let Some(id) = &aws.cluster_id
        && (id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    {
        errs.push("spec.aws.clusterId", format!("{id:?} must be 1-128 letters, digits, '-', '_' or '.'"));
    }
    let id = &aws.identity;
    let set = [id.irsa.is_some(), id.pod_identity.is_some(), id.secret_ref.is_some()].iter().filter(|s| **s).count();
    if set != 1 {
        errs.push("spec.aws.identity", format!("exactly one of irsa, podIdentity, secretRef must be set ({set} set)"));
    }
    if let Some(irsa) = &id.irsa
        && !is_role_arn(&irsa.role_arn)
    {
        errs.push(
            "spec.aws.identity.irsa.roleArn",
            format!("{:?} is not an IAM role ARN like arn:aws:iam::111122223333:role/ebs-csi", irsa.role_arn),
        );
    }
    if let Some(s) = &id.secret_ref
        && !is_dns_subdomain(&s.name)
    {
        errs.push("spec.aws.identity.secretRef.name", format!("{:?} is not a valid Secret name", s.name));
    }
    for key in aws.extra_tags.keys() {
        if is_reserved_tag(key) {
            errs.push(
                format!("spec.aws.extraTags[{key}]"),
                "reserved key: the driver refuses CSIVolumeName, CSIVolumeSnapshotName, kubernetes.io* and \
                    ebs.csi.aws.com/* (it would exit at start-up)",
            );
        } else if key.is_empty() || key.len() > 128 || key.starts_with("aws:") {
            errs.push(
                format!("spec.aws.extraTags[{key}]"),
                "tag keys must be 1-128 characters and must not start with aws:",
            );
        }
    }
    for (key, value) in &aws.extra_tags {
        if value.len() > 256 || value.contains(',') || value.contains('=') {
            errs.push(
                format!("spec.aws.extraTags[{key}]"),
                "tag values must be at most 256 characters without ',' or '=' (the --extra-tags separators)",
            );
        }
    }
    if let Some(e) = &aws.ec2_endpoint
        && !(e.starts_with("https://") || e.starts_with("http://"))
    {
        errs.push("spec.aws.ec2Endpoint", format!("{e:?} must be an http(s):// URL"));
    }
}

pub fn is_reserved_tag(key: &str) -> bool {
    key == "CSIVolumeName"
        || key == "CSIVolumeSnapshotName"
        || key.starts_with("kubernetes.io")
        || key.starts_with("ebs.csi.aws.com/")
}

fn controller(c: &ControllerSpec, errs: &mut FieldErrors) {
    if !(1..=10).contains(&c.replicas) {
        errs.push("spec.controller.replicas", format!("{} is out of range: 1 to 10", c.replicas));
    }
    if !(0..=10).contains(&c.log_level) {
        errs.push("spec.controller.logLevel", format!("{} is out of range: 0 to 10", c.log_level));
    }
    for (i, a) in c.extra_args.iter().enumerate() {
        let flag = a.split('=').next().unwrap_or(a);
        if !a.starts_with("--") || flag.len() <= 2 {
            errs.push(format!("spec.controller.extraArgs[{i}]"), format!("{a:?} must be a flag like --name=value"));
        } else if MANAGED_CONTROLLER_FLAGS.contains(&flag) {
            errs.push(
                format!("spec.controller.extraArgs[{i}]"),
                format!("{flag} is set by the operator from the spec; use the matching spec field instead"),
            );
        }
    }
}

fn node(n: &NodeSpec, errs: &mut FieldErrors) {
    if n.volume_attach_limit.is_some() && n.reserved_volume_attachments.is_some() {
        errs.push("spec.node", "volumeAttachLimit and reservedVolumeAttachments are mutually exclusive; set one");
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
    if !n.kubelet_path.starts_with('/') || n.kubelet_path.chars().any(char::is_whitespace) {
        errs.push("spec.node.kubeletPath", format!("{:?} must be an absolute path", n.kubelet_path));
    }
    if !(0..=10).contains(&n.log_level) {
        errs.push("spec.node.logLevel", format!("{} is out of range: 0 to 10", n.log_level));
    }
    match &n.max_unavailable {
        IntOrString::Int(i) if *i < 1 => {
            errs.push("spec.node.maxUnavailable", "must be at least 1 or a percentage like 10%")
        }
        IntOrString::String(s) if !is_percentage(s) => {
            errs.push("spec.node.maxUnavailable", format!("{s:?} must be a number or a percentage like 10%"))
        }
        _ => {}
    }
}

/// The rules every class list shares: valid, unique names and at most one default.
fn class_names(field: &str, kind: &str, classes: &[(&str, bool)], errs: &mut FieldErrors) {
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
            errs.push(path.clone(), format!("{name:?} is not a valid {kind} name"));
        }
        if classes[..i].iter().any(|(other, _)| other == name) {
            errs.push(path, format!("{name:?} appears more than once"));
        }
    }
}

fn storage_classes(classes: &[StorageClassSpec], errs: &mut FieldErrors) {
    let names: Vec<(&str, bool)> = classes.iter().map(|c| (c.name.as_str(), c.default)).collect();
    class_names("storageClasses", "StorageClass", &names, errs);
    for (i, c) in classes.iter().enumerate() {
        let path = format!("spec.storageClasses[{i}]");
        let t = c.volume_type;
        if let Some(iops) = c.iops {
            if !matches!(t, VolumeType::Gp3 | VolumeType::Io1 | VolumeType::Io2) {
                errs.push(format!("{path}.iops"), format!("applies only to gp3, io1 and io2, not {}", t.as_str()));
            } else if !(100..=256_000).contains(&iops) {
                errs.push(format!("{path}.iops"), format!("{iops} is out of range: 100 to 256000"));
            }
        }
        if let Some(tp) = c.throughput {
            if t != VolumeType::Gp3 {
                errs.push(format!("{path}.throughput"), format!("applies only to gp3, not {}", t.as_str()));
            } else if !(125..=2000).contains(&tp) {
                errs.push(format!("{path}.throughput"), format!("{tp} is out of range: 125 to 2000 MiB/s"));
            }
        }
        if c.kms_key_id.is_some() && !c.encrypted {
            errs.push(format!("{path}.kmsKeyId"), "needs encrypted: true");
        }
        for key in c.parameters.keys() {
            if let Some((_, field)) = STORAGE_CLASS_FIELD_PARAMETERS.iter().find(|(p, _)| p == key) {
                errs.push(format!("{path}.parameters[{key}]"), format!("set it with {path}.{field} instead"));
            } else if !STORAGE_CLASS_PARAMETERS.contains(&key.as_str())
                && !STORAGE_CLASS_PARAMETER_PREFIXES.iter().any(|p| key.starts_with(p))
            {
                errs.push(
                    format!("{path}.parameters[{key}]"),
                    format!(
                        "unknown driver parameter; known: {}, tagSpecification_<n>, csi.storage.k8s.io/*",
                        STORAGE_CLASS_PARAMETERS.join(", ")
                    ),
                );
            }
        }
    }
}

fn snapshot_classes(classes: &[VolumeSnapshotClassSpec], errs: &mut FieldErrors) {
    let names: Vec<(&str, bool)> = classes.iter().map(|c| (c.name.as_str(), c.default)).collect();
    class_names("volumeSnapshotClasses", "VolumeSnapshotClass", &names, errs);
    for (i, c) in classes.iter().enumerate() {
        let path = format!("spec.volumeSnapshotClasses[{i}]");
        for key in c.parameters.keys() {
            if !SNAPSHOT_CLASS_PARAMETERS.contains(&key.as_str())
                && !key.starts_with("tagSpecification_")
                && !key.starts_with("csi.storage.k8s.io/")
            {
                errs.push(
                    format!("{path}.parameters[{key}]"),
                    format!(
                        "unknown driver parameter; known: {}, tagSpecification_<n>",
                        SNAPSHOT_CLASS_PARAMETERS.join(", ")
                    ),
                );
            }
        }
    }
}

fn inventory(inv: &InventorySpec, errs: &mut FieldErrors) {
    if inv.interval.get() < MIN_INVENTORY_INTERVAL {
        errs.push("spec.inventory.interval", format!("{:?} is below the minimum of 1m", inv.interval.as_str()))
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

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

fn is_role_arn(s: &str) -> bool {
    let mut it = s.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) =
        (it.next(), it.next(), it.next(), it.next(), it.next(), it.next())
    else {
        return false;
    };
    partition.starts_with("aws")
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && resource.strip_prefix("role/").is_some_and(|n| !n.is_empty())
}

fn is_percentage(s: &str) -> bool {
    s.strip_suffix('%').and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| (1..=100).contains(&n))
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
        assert!(is_region("us-east-1") && is_region("us-gov-west-1") && is_region("ap-southeast-2"));
        assert!(!is_region("useast1") && !is_region("US-EAST-1"));
    }
}

//! The retag of existing volumes and snapshots (`spec.aws.retagExistingVolumes`): the driver
//! puts `--extra-tags` on the volumes and snapshots it creates, never on those it created before
//! the tags changed. With the switch on, each inventory refresh applies the added or changed
//! `spec.aws.extraTags` to the resources the inventory attributes to this cluster, with
//! `ec2:CreateTags` as the driver's identity (the credentials of the inventory and preflight).
//!
//! - **Decided from the inventory's view of each resource's tags**, so the retag is resumable: a
//!   restart (or a pass cut short) continues where AWS stands, and a resource that already
//!   carries the wanted tags costs nothing.
//! - **Never removes a tag** (no DeleteTags), so a key dropped from extraTags stays on the
//!   resources; **never overwrites a value it did not apply**: a resource carrying a wanted key
//!   with another value is a conflict, left as it is, unless that value is one the operator
//!   applied itself (`RetagReport::applied`, kept in the status across restarts).
//! - **Batched**: EC2's CreateTags takes up to 1000 resource IDs a call and recommends smaller
//!   batches (EC2 API Reference, CreateTags, `ResourceId.N`: "Constraints: Up to 1000 resource
//!   IDs. We recommend breaking up this request into smaller batches."): `BATCH` is 200.
//! - **Paced**: EC2 throttles each API with a token bucket per account and region, shared with
//!   the driver (EC2 API Reference, "Request throttling for the Amazon EC2 API"; CreateTags is a
//!   mutating action). One call every `PACING` (1 s), at most `MAX_CALLS` calls (10,000
//!   resources) a refresh, keeps the operator far below any refill rate. A call AWS still throttles
//!   after the SDK's retries (exponential backoff, `sdk::RetryPolicy`) ends the pass: the rest is
//!   pending until the next refresh, one inventory interval later.
//!
//! The status gets counts and a capped conflict list, written with the rest of `status.aws`
//! once per refresh at most (never a write per resource).

use std::collections::BTreeMap;
use std::time::Duration;

use super::api::{AwsApi, ErrorClass, Snapshot, Tags, Volume};
use crate::crd::{RetagConflict, RetagReport};

/// Resources per CreateTags call (EC2 allows 1000 and recommends smaller batches).
pub const BATCH: usize = 200;
/// Time between two CreateTags calls of a pass.
pub const PACING: Duration = Duration::from_secs(1);
/// CreateTags calls per pass (a refresh): `MAX_CALLS * BATCH` resources at most.
pub const MAX_CALLS: usize = 50;
/// EC2 allows 50 tags on a resource (EC2 API Reference, CreateTags: "Each resource can have a
/// maximum of 50 tags").
pub const MAX_TAGS: usize = 50;
/// Conflicts listed in the status; the count is exact.
pub const CONFLICTS_LISTED: usize = 20;
/// Values remembered per key in `RetagReport::applied`.
pub const APPLIED_PER_KEY: usize = 5;
/// Keys remembered in `RetagReport::applied` (the wanted keys always are).
pub const APPLIED_KEYS: usize = 80;

/// The IAM action a retag needs beyond the driver's managed policy (which grants CreateTags only
/// as part of a create, condition `ec2:CreateAction`), as the permission report names it.
pub const ACTION: &str = "ec2:CreateTags on existing volumes and snapshots";

/// How a pass is cut up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub batch: usize,
    pub pacing: Duration,
    pub max_calls: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { batch: BATCH, pacing: PACING, max_calls: MAX_CALLS }
    }
}

/// What a refresh retags: the spec's extraTags, when the switch is on.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RetagParams {
    pub wanted: BTreeMap<String, String>,
    pub limits: Limits,
}

impl RetagParams {
    /// From a driver's spec: None when the switch is off.
    pub fn from_spec(spec: &crate::crd::HardenedCsiDriverSpec) -> Option<Self> {
        spec.aws.retag_existing_volumes.then(|| Self { wanted: spec.aws.extra_tags.clone(), limits: Limits::default() })
    }
}

/// What a pass will do, decided from the resources' tags alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub resources: u64,
    /// Resources that lack a wanted tag or carry an older value the operator applied.
    pub wanted: u64,
    /// The calls: the tags to set and the resources, at most `limits.batch` a call.
    pub calls: Vec<(Tags, Vec<String>)>,
    /// Every conflict, by resource ID then key.
    pub conflicts: Vec<RetagConflict>,
    /// Resources with at least one conflict.
    pub conflicting: u64,
    /// Resources that would exceed EC2's 50 tags.
    pub over_limit: Vec<String>,
}

/// The tags to set on one resource, and its conflicts.
fn decide(
    id: &str,
    tags: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
    applied: &BTreeMap<String, Vec<String>>,
    conflicts: &mut Vec<RetagConflict>,
) -> Vec<(String, String)> {
    let mut set = Vec::new();
    for (key, value) in wanted {
        match tags.get(key) {
            None => set.push((key.clone(), value.clone())),
            Some(current) if current == value => {}
            Some(current) if applied.get(key).is_some_and(|own| own.contains(current)) => {
                set.push((key.clone(), value.clone()))
            }
            Some(current) => conflicts.push(RetagConflict {
                id: id.to_string(),
                key: key.clone(),
                value: current.clone(),
                wanted: value.clone(),
            }),
        }
    }
    set
}

/// Plans a pass over this cluster's volumes and snapshots: volumes being deleted are skipped;
/// resources wanting the same tags share calls, in resource ID order.
pub fn plan(
    params: &RetagParams,
    applied: &BTreeMap<String, Vec<String>>,
    volumes: &[Volume],
    snapshots: &[Snapshot],
) -> Plan {
    let mut resources: Vec<(&str, &BTreeMap<String, String>)> = volumes
        .iter()
        .filter(|v| v.state != "deleting" && v.state != "deleted")
        .map(|v| (v.id.as_str(), &v.tags))
        .chain(snapshots.iter().map(|s| (s.id.as_str(), &s.tags)))
        .collect();
    resources.sort();
    let mut out = Plan { resources: resources.len() as u64, ..Plan::default() };
    let mut groups: BTreeMap<Vec<(String, String)>, Vec<String>> = BTreeMap::new();
    for (id, tags) in resources {
        let before = out.conflicts.len();
        let set = decide(id, tags, &params.wanted, applied, &mut out.conflicts);
        if out.conflicts.len() > before {
            out.conflicting += 1;
        }
        if set.is_empty() {
            continue;
        }
        out.wanted += 1;
        let new_keys = set.iter().filter(|(k, _)| !tags.contains_key(k)).count();
        if tags.len() + new_keys > MAX_TAGS {
            out.over_limit.push(id.to_string());
            continue;
        }
        groups.entry(set).or_default().push(id.to_string());
    }
    let batch = params.limits.batch.max(1);
    for (tags, ids) in groups {
        for chunk in ids.chunks(batch) {
            out.calls.push((tags.clone(), chunk.to_vec()));
        }
    }
    out
}

/// The values the operator applied, once the wanted ones are added: per key oldest first, at
/// most `APPLIED_PER_KEY`; keys no longer wanted go first when there are too many.
pub fn applied_after(
    previous: &BTreeMap<String, Vec<String>>,
    wanted: &BTreeMap<String, String>,
) -> BTreeMap<String, Vec<String>> {
    let mut out = previous.clone();
    for (key, value) in wanted {
        let values = out.entry(key.clone()).or_default();
        values.retain(|v| v != value);
        values.push(value.clone());
        let excess = values.len().saturating_sub(APPLIED_PER_KEY);
        values.drain(..excess);
    }
    while out.len() > APPLIED_KEYS {
        let Some(gone) = out.keys().find(|k| !wanted.contains_key(*k)).cloned() else { break };
        out.remove(&gone);
    }
    out
}

/// Whether the pass may call CreateTags, from the preflight of the same refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Granted, or not decided by the DryRun (the calls then decide).
    Go,
    /// Why nothing is sent (the DryRun was denied, or the operator cannot act as the driver).
    Blocked(String),
}

/// Runs a pass: plans it, then makes its calls, paced, until done, out of budget, or AWS throttles
/// (or fails) beyond the SDK's retries. `applied` is what the previous status says the operator
/// applied.
pub async fn run(
    api: &dyn AwsApi,
    params: &RetagParams,
    applied: &BTreeMap<String, Vec<String>>,
    volumes: &[Volume],
    snapshots: &[Snapshot],
    permission: Permission,
) -> RetagReport {
    let plan = plan(params, applied, volumes, snapshots);
    let mut report = RetagReport {
        resources: plan.resources,
        wanted: plan.wanted,
        failed: plan.over_limit.len() as u64,
        conflicts: plan.conflicting,
        conflict_list: plan.conflicts.iter().take(CONFLICTS_LISTED).cloned().collect(),
        applied: applied_after(applied, &params.wanted),
        ..RetagReport::default()
    };
    if let Some(id) = plan.over_limit.first() {
        report.last_error = Some("TagLimitExceeded".to_string());
        report.last_error_message = Some(format!(
            "{} resource(s), first {id}, would carry more than EC2's {MAX_TAGS} tags with the extraTags added; \
                remove tags from them or fewer extraTags",
            plan.over_limit.len()
        ));
    }
    let queued: u64 = plan.calls.iter().map(|(_, ids)| ids.len() as u64).sum();
    if let Permission::Blocked(why) = permission {
        if queued > 0 {
            report.blocked = Some(why);
        }
        report.pending = queued;
        return report;
    }
    let mut done = 0u64;
    for (i, (tags, ids)) in plan.calls.iter().enumerate() {
        if i >= params.limits.max_calls {
            break;
        }
        if i > 0 {
            tokio::time::sleep(params.limits.pacing).await;
        }
        report.calls += 1;
        match api.create_tags(ids, tags).await {
            Ok(()) => {
                report.tagged += ids.len() as u64;
                done += ids.len() as u64;
            }
            Err(e) => {
                tracing::warn!(code = %e.code, attempts = e.attempts, resources = ids.len(), "CreateTags failed: {}",
                    e.message);
                report.last_error = Some(e.code.clone());
                report.last_error_message = Some(format!("CreateTags: {}", e.message));
                match e.class {
                    // Not granted after all (the DryRun was undecided): nothing more is sent.
                    ErrorClass::Denied => {
                        report.blocked =
                            Some(format!("CreateTags was denied ({}): grant {ACTION} to the driver's role", e.code));
                        break;
                    }
                    // Throttled (or AWS failing) beyond the SDK's retries: back off until the next
                    // refresh; the rest stays pending.
                    ErrorClass::Throttled | ErrorClass::Server | ErrorClass::Transport | ErrorClass::Credentials => {
                        break;
                    }
                    // This batch's answer (a volume deleted meanwhile, a tag limit): the next
                    // calls go on, and the next refresh retries this one.
                    ErrorClass::Client => {
                        report.failed += ids.len() as u64;
                        done += ids.len() as u64;
                    }
                }
            }
        }
    }
    report.pending = queued - done;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(id: &str, tags: &[(&str, &str)]) -> Volume {
        Volume {
            id: id.into(),
            size_gib: 1,
            volume_type: "gp3".into(),
            zone: "us-east-1a".into(),
            state: "in-use".into(),
            create_time: None,
            csi_volume_name: None,
            attachments: Vec::new(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn wanted(pairs: &[(&str, &str)]) -> RetagParams {
        RetagParams {
            wanted: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            limits: Limits { batch: 2, ..Limits::default() },
        }
    }

    #[test]
    fn only_missing_tags_and_own_old_values_are_set_and_a_persons_value_is_a_conflict() {
        let applied: BTreeMap<String, Vec<String>> = [("team".to_string(), vec!["old".to_string()])].into();
        let volumes = [
            vol("vol-1", &[]),
            vol("vol-2", &[("team", "old")]),
            vol("vol-3", &[("team", "platform"), ("cost", "x")]),
            vol("vol-4", &[("team", "someone-else"), ("owner", "me")]),
            vol("vol-5", &[("team", "platform")]),
        ];
        let p = plan(&wanted(&[("team", "platform"), ("cost", "x")]), &applied, &volumes, &[]);
        assert_eq!((p.resources, p.wanted, p.conflicting), (5, 4, 1));
        assert_eq!(
            p.conflicts[0],
            RetagConflict {
                id: "vol-4".into(),
                key: "team".into(),
                value: "someone-else".into(),
                wanted: "platform".into()
            }
        );
        let calls: Vec<(Vec<&str>, Vec<&str>)> = p
            .calls
            .iter()
            .map(|(t, ids)| (t.iter().map(|(k, _)| k.as_str()).collect(), ids.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            calls,
            [(vec!["cost"], vec!["vol-4", "vol-5"]), (vec!["cost", "team"], vec!["vol-1", "vol-2"])],
            "grouped by the tags they need, in batches of 2; vol-3 needs nothing, vol-4 only the key it lacks"
        );
    }

    #[test]
    fn a_resource_that_would_pass_fifty_tags_is_not_sent() {
        let many: Vec<(String, String)> = (0..50).map(|i| (format!("k{i}"), "v".to_string())).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let p = plan(&wanted(&[("team", "a")]), &BTreeMap::new(), &[vol("vol-full", &refs)], &[]);
        assert_eq!(p.over_limit, ["vol-full"]);
        assert!(p.calls.is_empty());
    }

    #[test]
    fn applied_values_accumulate_capped_per_key() {
        let mut applied = BTreeMap::new();
        for v in ["a", "b", "c", "d", "e", "f", "b"] {
            applied = applied_after(&applied, &[("team".to_string(), v.to_string())].into());
        }
        assert_eq!(applied["team"], ["c", "d", "e", "f", "b"]);
        let removed = applied_after(&applied, &BTreeMap::new());
        assert_eq!(removed, applied, "a key dropped from extraTags is remembered");
    }
}

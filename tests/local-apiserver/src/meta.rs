//! Object metadata as the real server sets it: uid, creationTimestamp, generation (bumped when
//! anything outside metadata and status changes), generateName, and name validation.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::error::Cause;

/// RFC 3339 UTC with second precision, as metav1.Time serializes.
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Seconds since an RFC 3339 timestamp (for table ages); 0 when unparsable.
pub fn age_seconds(ts: &str) -> i64 {
    ts.parse::<jiff::Timestamp>().map(|t| (jiff::Timestamp::now() - t).get_seconds().max(0)).unwrap_or(0)
}

/// `5s`, `3m`, `2h`, `4d` like kubectl's human durations.
pub fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 3 => format!("{}m", s / 60),
        s if s < 3600 * 48 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

static UID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A random-looking RFC 4122 v4 UID, unique within the process.
pub fn new_uid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let n = UID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    let a = h.finish();
    let mut h2 = std::collections::hash_map::RandomState::new().build_hasher();
    h2.write_u64(a ^ n.rotate_left(17));
    let b = h2.finish();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        (a & 0xfff) as u16,
        ((b >> 48) as u16 & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// Random 5-character suffix for generateName.
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = new_uid().bytes().fold(0u64, |acc, b| acc.wrapping_mul(31).wrapping_add(b as u64));
    (0..5)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// Validates a DNS-1123 subdomain name (most kinds); RBAC kinds accept path segments.
pub fn validate_name(name: &str, kind: &str) -> Option<Cause> {
    let rbac_like = matches!(kind, "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding");
    let ok = if rbac_like {
        !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('%')
    } else {
        !name.is_empty()
            && name.len() <= 253
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    if ok {
        return None;
    }
    let message = if name.is_empty() {
        "Required value: name or generateName is required".to_string()
    } else {
        format!(
            "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
                characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', \
                regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    };
    Some(Cause {
        reason: if name.is_empty() { "FieldValueRequired".into() } else { "FieldValueInvalid".into() },
        message,
        field: "metadata.name".into(),
    })
}

/// Stamps a new object's server-owned metadata. `generation` is set only for kinds whose real
/// strategy tracks it (workloads, PDBs, CRDs and custom resources); other kinds have none.
pub fn stamp_create(obj: &mut Value, api_version: &str, kind: &str, generation: bool) {
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    let meta = &mut obj["metadata"];
    meta["uid"] = json!(new_uid());
    meta["creationTimestamp"] = json!(now());
    if generation {
        meta["generation"] = json!(1);
    } else if let Some(m) = meta.as_object_mut() {
        m.remove("generation");
    }
    if let Some(m) = meta.as_object_mut() {
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("selfLink");
    }
}

/// Copies the server-owned metadata of `old` onto an update and bumps `generation` when
/// anything outside metadata and status changed.
pub fn carry_over(old: &Value, new: &mut Value) {
    for field in ["uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds"] {
        match old["metadata"].get(field) {
            Some(v) => new["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    if old["metadata"].get("generation").is_some() && spec_changed(old, new) {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        new["metadata"]["generation"] = json!(g);
    }
}

/// Whether `a` and `b` are equal leaving out the top-level fields `skip` (compared in place, not
/// on copies: the workload loop compares every object it writes).
fn equal_without(a: &Value, b: &Value, skip: &[&str]) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            let kept = |m: &'_ serde_json::Map<String, Value>| m.keys().filter(|k| !skip.contains(&k.as_str())).count();
            kept(x) == kept(y)
                && x.iter().filter(|(k, _)| !skip.contains(&k.as_str())).all(|(k, v)| y.get(k) == Some(v))
        }
        _ => a == b,
    }
}

/// Whether anything but metadata and status differs.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    !equal_without(old, new, &["metadata", "status", "apiVersion", "kind"])
}

/// Two stored objects are the same write when they differ only in resourceVersion (a no-op).
pub fn same_content(a: &Value, b: &Value) -> bool {
    equal_without(a, b, &["metadata"]) && equal_without(&a["metadata"], &b["metadata"], &["resourceVersion"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_unique_and_well_formed() {
        let a = new_uid();
        let b = new_uid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
    }

    #[test]
    fn a_no_op_differs_only_in_resource_version() {
        let a = json!({"metadata": {"name": "x", "resourceVersion": "1"}, "spec": {"a": 1}});
        assert!(same_content(&a, &json!({"metadata": {"name": "x", "resourceVersion": "2"}, "spec": {"a": 1}})));
        assert!(!same_content(&a, &json!({"metadata": {"name": "y", "resourceVersion": "1"}, "spec": {"a": 1}})));
        assert!(!same_content(&a, &json!({"metadata": {"name": "x"}, "spec": {"a": 1}, "status": {}})));
        assert!(!same_content(&a, &json!({"metadata": {"name": "x", "resourceVersion": "1"}})));
        assert!(!spec_changed(&a, &json!({"metadata": {}, "spec": {"a": 1}, "status": {"b": 2}, "kind": "K"})));
        assert!(spec_changed(&a, &json!({"metadata": {}, "spec": {"a": 1}, "data": {}})));
    }

    #[test]
    fn generation_moves_on_spec_only() {
        let old = json!({"metadata": {"generation": 3, "uid": "u"}, "spec": {"a": 1}, "status": {"x": 1}});
        let mut labels_only = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"a": 1}, "status": {"x": 2}});
        carry_over(&old, &mut labels_only);
        assert_eq!(labels_only["metadata"]["generation"], 3);
        assert_eq!(labels_only["metadata"]["uid"], "u");
        let mut spec = json!({"metadata": {}, "spec": {"a": 2}});
        carry_over(&old, &mut spec);
        assert_eq!(spec["metadata"]["generation"], 4);
        let mut rules = json!({"metadata": {}, "rules": []});
        carry_over(&json!({"metadata": {"generation": 1}, "rules": [{"verbs": ["get"]}]}), &mut rules);
        assert_eq!(rules["metadata"]["generation"], 2);
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("ok-name.x", "ConfigMap").is_none());
        assert!(validate_name("Bad_Name", "ConfigMap").is_some());
        assert!(validate_name("system:controller:x", "ClusterRole").is_none());
        assert_eq!(human_age(30), "30s");
        assert_eq!(human_age(600), "10m");
    }
}

//! The ClusterRole aggregation controller (RBAC mode): a ClusterRole with an `aggregationRule`
//! gets as `rules` the rules of every other ClusterRole its selectors match, in name order,
//! without duplicates, replacing what it held, as kube-controller-manager's
//! `clusterrole-aggregation` controller writes them. Runs on every ClusterRole change until
//! nothing changes (aggregations of aggregations settle in a few passes).

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::rbac::{CLUSTER_ROLES, GROUP};
use crate::handlers::Target;
use crate::selectors::LabelSelector;
use crate::server::Shared;
use crate::store::Inner;

const MANAGER: &str = "clusterrole-aggregation-controller";

/// The rules an aggregated ClusterRole should hold now.
fn aggregated_rules(s: &Inner, role: &Value) -> Option<Vec<Value>> {
    let selectors = role["aggregationRule"]["clusterRoleSelectors"].as_array()?;
    let selectors: Vec<LabelSelector> = selectors.iter().map(LabelSelector::from_object).collect();
    let own = role["metadata"]["name"].as_str().unwrap_or_default();
    let mut rules: Vec<Value> = Vec::new();
    // The store lists in name order.
    for other in s.list(CLUSTER_ROLES, None) {
        if other["metadata"]["name"].as_str() == Some(own)
            || !selectors.iter().any(|sel| sel.matches(other["metadata"].get("labels")))
        {
            continue;
        }
        for r in other["rules"].as_array().into_iter().flatten() {
            if !rules.contains(r) {
                rules.push(r.clone());
            }
        }
    }
    Some(rules)
}

/// One pass over the aggregated ClusterRoles; true when one was rewritten.
fn pass(shared: &Shared, s: &mut Inner) -> bool {
    let Some(info) = shared.registry.lookup(GROUP, "v1", "clusterroles") else {
        return false;
    };
    let mut changed = false;
    for role in s.list(CLUSTER_ROLES, None) {
        let Some(rules) = aggregated_rules(s, &role) else {
            continue;
        };
        let current = role["rules"].as_array().cloned().unwrap_or_default();
        if current == rules || role["metadata"].get("deletionTimestamp").is_some() {
            continue;
        }
        let mut new = (*role).clone();
        new["rules"] = Value::Array(rules);
        let t = Target {
            info: info.clone(),
            namespace: None,
            name: role["metadata"]["name"].as_str().map(str::to_string),
            subresource: None,
        };
        match crate::write::finish_write(shared, s, &t, Some(&role), new, false, MANAGER, false) {
            Ok((_, true)) => changed = true,
            Ok(_) => {}
            Err(e) => tracing::warn!(role = ?t.name, error = %e.message, "aggregating a ClusterRole"),
        }
    }
    changed
}

fn reconcile(shared: &Shared) {
    for _ in 0..16 {
        let mut s = shared.store.lock();
        if !pass(shared, &mut s) {
            break;
        }
    }
}

pub async fn run(shared: Arc<Shared>) {
    let mut events = shared.store.lock().subscribe();
    reconcile(&shared);
    loop {
        match events.recv().await {
            Ok(e) if e.storage_key == CLUSTER_ROLES => reconcile(&shared),
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => reconcile(&shared),
            Err(RecvError::Closed) => return,
        }
    }
}

//! One reconcile of one HardenedCsiDriver: check, render, apply what changed, prune, observe,
//! and write status only when it differs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::status::{self, Observed, Rollout};
use super::{Context, FORCE_DELETE_ANNOTATION, RESYNC, children, deletion, driver_resource};
use crate::crd::{HardenedCsiDriver, HardenedCsiDriverStatus, ReplicaStatus, parse};
use crate::error::{Error, Result};
use crate::render::{self, MANAGER};

pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&obj, &ctx).await;
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.metrics.count_reconcile("ok");
        if let Ok(mut f) = ctx.failures.lock() {
            f.remove(&obj.name_any());
        }
    }
    result
}

async fn reconcile_inner(obj: &DynamicObject, ctx: &Context) -> Result<Action> {
    let name = obj.name_any();
    let uid = obj.uid();
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &driver_resource());
    let caps = ctx.capabilities();
    let old_status: Option<HardenedCsiDriverStatus> =
        obj.data.get("status").and_then(|s| serde_json::from_value(s.clone()).ok());
    let mut observed = Observed {
        generation: obj.metadata.generation,
        snapshot_api: caps.snapshot_api,
        kubernetes_version: Some(format!("{}.{}", caps.kubernetes_version.0, caps.kubernetes_version.1)),
        aws: ctx.aws.as_ref().and_then(|a| a.status(&name)),
        aws_conditions: ctx.aws.as_ref().map(|a| a.conditions(&name)).unwrap_or_default(),
        ..Observed::default()
    };

    if obj.metadata.deletion_timestamp.is_some() {
        return finalize(obj, ctx, &api, old_status, observed).await;
    }
    if !deletion::has_finalizer(obj) {
        deletion::set_finalizer(&api, obj, true).await?;
    }

    // One driver per cluster: the one in charge is reconciled, the others only report.
    if let Some(first) = first_driver(ctx, obj)
        && first != name
    {
        observed.other_driver = Some(first);
        write_status(ctx, &api, obj, old_status.as_ref(), &observed).await?;
        return Ok(Action::requeue(Duration::from_secs(60)));
    }

    let value = serde_json::to_value(obj).map_err(|source| Error::Serialize { what: name.clone(), source })?;
    let mut errors = Vec::new();
    let namespace = match parse::from_value(value).and_then(|hcd| render::render(&hcd, &caps).map(|c| (hcd, c))) {
        Err(e) => {
            observed.spec_errors = Some(e.to_string());
            // Nothing running is touched; report what the last good spec's workloads do.
            old_status.as_ref().and(obj.data.pointer("/spec/namespace").and_then(Value::as_str).map(str::to_string))
        }
        Ok((hcd, children)) => {
            errors = apply_children(ctx, &hcd, &children, uid.as_deref(), &mut observed).await?;
            check_pull_secrets(ctx, &hcd, &mut observed).await;
            Some(hcd.spec.namespace.clone())
        }
    };
    if let Some(ns) = namespace {
        observed.controller = Some(rollout(ctx, "Deployment", &ns, "ebs-csi-controller"));
        observed.node = Some(rollout(ctx, "DaemonSet", &ns, "ebs-csi-node"));
    }
    observed.apply_errors = errors.iter().map(ToString::to_string).collect();
    write_status(ctx, &api, obj, old_status.as_ref(), &observed).await?;
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(Action::requeue(RESYNC)),
    }
}

async fn apply_children(
    ctx: &Context,
    hcd: &HardenedCsiDriver,
    children: &[render::Child],
    uid: Option<&str>,
    observed: &mut Observed,
) -> Result<Vec<Error>> {
    let name = hcd.name_any();
    observed.driver_image = Some(render::images::resolve(&hcd.spec).driver);
    observed.storage_classes = children.iter().filter(|c| c.kind() == "StorageClass").map(|c| c.name()).collect();
    observed.volume_snapshot_classes =
        children.iter().filter(|c| c.kind() == "VolumeSnapshotClass").map(|c| c.name()).collect();
    // `hcd` is the stored object, uid included, so every child already carries our owner reference.
    let foreign = children::foreign(&ctx.client, &ctx.caches, children, &name, uid).await?;
    if !foreign.is_empty() && !hcd.spec.adopt {
        observed.foreign = foreign;
        return Ok(Vec::new());
    }
    let mut errors = children::apply(&ctx.client, &ctx.caches, &ctx.applied, &ctx.metrics, children).await;
    if errors.is_empty() {
        let keep: BTreeSet<String> = children.iter().map(render::Child::key).collect();
        errors.extend(children::prune(&ctx.client, &ctx.caches, &name, uid, &keep).await);
    }
    Ok(errors)
}

/// The driver in charge: one already Active keeps its place; otherwise the oldest (creation
/// time, then name) of those not being deleted. Timestamps have second resolution, so ties are
/// real and the Active flag keeps a later tie-break from handing the cluster over.
fn first_driver(ctx: &Context, me: &DynamicObject) -> Option<String> {
    let key = |d: &DynamicObject| {
        let active = d
            .data
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == status::ACTIVE && c["status"] == "True"));
        (!active, d.metadata.creation_timestamp.clone(), d.name_any())
    };
    let mut all: Vec<_> =
        ctx.drivers.state().iter().filter(|d| d.metadata.deletion_timestamp.is_none()).map(|d| key(d)).collect();
    if !all.iter().any(|(_, _, n)| *n == me.name_any()) {
        all.push(key(me));
    }
    all.sort();
    all.into_iter().next().map(|(_, _, n)| n)
}

/// Reads a workload's rollout from the cache.
fn rollout(ctx: &Context, kind: &str, namespace: &str, name: &str) -> Rollout {
    let Some(obj) = ctx.caches.full(kind, namespace, name) else { return Rollout::default() };
    let st = obj.data.get("status").cloned().unwrap_or(Value::Null);
    let int = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0) as i32;
    let observed = st.get("observedGeneration").and_then(Value::as_i64) == obj.metadata.generation;
    let replicas = if kind == "Deployment" {
        let desired = obj.data.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1) as i32;
        ReplicaStatus::new(
            desired,
            int(&st, "readyReplicas"),
            int(&st, "updatedReplicas"),
            int(&st, "availableReplicas"),
        )
    } else {
        ReplicaStatus::new(
            int(&st, "desiredNumberScheduled"),
            int(&st, "numberReady"),
            int(&st, "updatedNumberScheduled"),
            int(&st, "numberAvailable"),
        )
    };
    Rollout { replicas, observed }
}

/// Checks that the pull Secrets exist, by metadata only: the operator never reads secret data.
async fn check_pull_secrets(ctx: &Context, hcd: &HardenedCsiDriver, observed: &mut Observed) {
    let names = &hcd.spec.images.pull_secrets;
    if names.is_empty() {
        return;
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &hcd.spec.namespace);
    let mut missing = Vec::new();
    for n in names {
        match api.get_metadata_opt(n).await {
            Ok(Some(_)) => {}
            Ok(None) => missing.push(n.clone()),
            Err(e) => {
                observed.pull_secret_check_error = Some(e.to_string());
                return;
            }
        }
    }
    observed.missing_pull_secrets = Some(missing);
}

async fn finalize(
    obj: &DynamicObject,
    ctx: &Context,
    api: &Api<DynamicObject>,
    old: Option<HardenedCsiDriverStatus>,
    mut observed: Observed,
) -> Result<Action> {
    if !deletion::has_finalizer(obj) {
        return Ok(Action::await_change());
    }
    // A driver that never ran anything (a second, inactive one) guards nothing.
    let runs_the_driver = children::owns_any(&ctx.caches, &obj.name_any(), obj.uid().as_deref());
    let force = obj.annotations().get(FORCE_DELETE_ANNOTATION).is_some_and(|v| v == "true");
    let pvs = if runs_the_driver { deletion::driver_volumes(&ctx.client).await? } else { 0 };
    if pvs > 0 && !force {
        observed.deletion_blocked_by = Some(pvs);
        observed.controller =
            old.as_ref().and_then(|s| s.controller.clone()).map(|replicas| Rollout { replicas, observed: true });
        observed.node = old.as_ref().and_then(|s| s.node.clone()).map(|replicas| Rollout { replicas, observed: true });
        write_status(ctx, api, obj, old.as_ref(), &observed).await?;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let errors = children::delete_all(&ctx.client, &ctx.caches, &obj.name_any(), obj.uid().as_deref()).await;
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    deletion::set_finalizer(api, obj, false).await?;
    tracing::info!(driver = %obj.name_any(), volumes_kept = pvs, "driver removed");
    Ok(Action::await_change())
}

/// Writes status (server-side apply of the status subresource) only when it changed, and
/// publishes an event for each condition whose status changed.
async fn write_status(
    ctx: &Context,
    api: &Api<DynamicObject>,
    obj: &DynamicObject,
    old: Option<&HardenedCsiDriverStatus>,
    observed: &Observed,
) -> Result<()> {
    let now = Time(jiff::Timestamp::now());
    let new = status::build(old, observed, &now);
    if old == Some(&new) {
        return Ok(());
    }
    let name = obj.name_any();
    let patch = json!({"apiVersion": "csi.hardened.dev/v1alpha1", "kind": "HardenedCsiDriver", "status": new});
    api.patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::Status { name: name.clone(), source })?;
    let reference = obj.object_ref(&driver_resource());
    for c in status::transitions(old, &new) {
        if !matches!(
            c.type_.as_str(),
            status::READY
                | status::DEGRADED
                | status::SPEC_VALID
                | status::ACTIVE
                | status::OWNERSHIP
                | status::DELETION_BLOCKED
                | status::PULL_SECRETS
        ) {
            continue;
        }
        let good = match c.type_.as_str() {
            status::DEGRADED | status::OWNERSHIP | status::DELETION_BLOCKED => c.status == "False",
            _ => c.status == "True",
        };
        // An event is a courtesy; failing to publish one must not fail the reconcile.
        let ev = Event {
            type_: if good { EventType::Normal } else { EventType::Warning },
            reason: c.reason.clone(),
            note: Some(truncate(&c.message, 1000)),
            action: c.type_.clone(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&ev, &reference).await {
            tracing::debug!(error = %e, "event not published");
        }
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

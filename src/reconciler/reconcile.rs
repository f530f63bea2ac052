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

use super::conditions::{self, ImageSource, Observed, Rollout};
use super::error::{ApiMessage, Error, Result};
use super::{
    Context, FORCE_DELETE_ANNOTATION, RESYNC, STATUS_COALESCE, children, deletion, driver_resource, pods, secrets,
    snapshots,
};
use crate::crd::{HardenedCsiDriver, HardenedCsiDriverStatus, ReplicaStatus, VolumesInUse, parse};
use crate::render::{self, MANAGER, controller_deployment, node_daemonset};

/// How often a driver with VolumeAttributesClasses kept for their claims checks them again.
const KEPT_CLASS_RECHECK: Duration = Duration::from_secs(60);
/// How soon a driver with held-back classes is looked at again.
const HELD_CLASS_RECHECK: Duration = Duration::from_secs(30);

/// One pass over one driver. Its span names the driver, so every log line and event of the pass
/// says which HardenedCsiDriver it is about.
#[tracing::instrument(name = "reconcile", skip_all, fields(driver = %obj.name_any()))]
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
    if !ctx.synced() {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let name = obj.name_any();
    let uid = obj.uid();
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &driver_resource());
    let caps = ctx.capabilities();
    let old_status = ctx.status_log.current(&name, cached_status(obj));
    let mut observed = Observed {
        // The generation of the object this reconcile acts on: what the status describes.
        generation: obj.metadata.generation,
        failed_attempts: ctx.failures.lock().ok().and_then(|f| f.get(&name).copied()).unwrap_or(0),
        snapshot_api: caps.snapshot_api,
        volume_attributes_class_api: caps.volume_attributes_class_api,
        kubernetes_version: Some(format!("{}.{}", caps.kubernetes_version.0, caps.kubernetes_version.1)),
        aws: ctx.aws.as_ref().and_then(|a| a.get(&name)),
        ..Observed::default()
    };

    if obj.metadata.deletion_timestamp.is_some() {
        untrack(ctx, &name);
        ctx.secrets.clear();
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
        untrack(ctx, &name);
        write_status(ctx, &api, obj, old_status.as_ref(), &observed).await?;
        return Ok(Action::requeue(Duration::from_secs(60)));
    }
    // The snapshot API appeared while running (the operator applied its CRDs, or someone did): the
    // VolumeSnapshotClass cache lists it on its watch's next retry. Until it has, existence of a
    // class cannot be told without a read the operator's RBAC does not grant: wait, touching nothing.
    let vsc = <crate::render::VolumeSnapshotClass as Resource>::kind(&()).to_string();
    if caps.snapshot_api && ctx.caches.by_kind.get(&vsc).is_some_and(|(_, store)| !store.synced()) {
        tracing::debug!(driver = %name, "waiting for the VolumeSnapshotClass cache to list");
        return Ok(Action::requeue(Duration::from_millis(250)));
    }
    // The grace period of the health rules; an unreadable spec keeps the last one.
    if let Some(d) = obj.data.pointer("/spec/health/degradedAfter").and_then(Value::as_str)
        && let Ok(d) = d.parse::<crate::crd::SpecDuration>()
    {
        observed.degraded_after = d.get();
    }

    let value = serde_json::to_value(obj).map_err(|source| Error::Serialize { what: name.clone(), source })?;
    let mut errors = Vec::new();
    let parsed = parse::from_value(value);
    let mut caps = caps;
    let mut secrets_seen = Vec::new();
    // A driver the installation refuses (another namespace) is not looked into at all.
    if let Ok(hcd) = &parsed
        && ctx.policy.refusals(&hcd.spec).is_empty()
    {
        secrets_seen = observe_secrets(ctx, hcd).await;
        let identity = hcd.spec.aws.identity.secret_ref.as_ref().map(|s| s.name.as_str());
        caps.identity_secret_version = secrets_seen.iter().find_map(|(n, seen)| match seen {
            secrets::Seen::Present(rv) if Some(n.as_str()) == identity => Some(rv.clone()),
            _ => None,
        });
    }
    // The snapshot stack is looked at before rendering: another installation's means ours is not
    // rendered.
    let mut stack_error = None;
    if let Ok(hcd) = &parsed
        && ctx.policy.refusals(&hcd.spec).is_empty()
    {
        if hcd.spec.snapshots.controller.enabled {
            let snapshotter = render::images::resolve(&hcd.spec).snapshotter;
            let controller = render::snapshot_controller::image(&hcd.spec);
            match snapshots::observe(&ctx.client, &hcd.spec.namespace, &name, &snapshotter, &controller).await {
                Ok(stack) => {
                    caps.foreign_snapshot_stack = stack.mode != conditions::SnapshotMode::Ours;
                    observed.snapshot_stack = Some(stack);
                }
                Err(e) => stack_error = Some(e),
            }
        } else {
            observed.snapshot_controller_disabled = true;
        }
    }
    if let Some(e) = stack_error {
        return Err(e);
    }
    let namespace = match parsed.and_then(|hcd| render::render(&hcd, &caps).map(|c| (hcd, c))) {
        Err(e) => {
            untrack(ctx, &name);
            let fips = obj.data.pointer("/spec/fips").and_then(Value::as_bool).unwrap_or(false);
            observed.fips_refused = fips && e.0.iter().any(|f| f.field == "spec.aws.region");
            observed.spec_errors = Some(e.to_string());
            // Nothing running is touched; report what the last good spec's workloads do.
            old_status.as_ref().and(obj.data.pointer("/spec/namespace").and_then(Value::as_str).map(str::to_string))
        }
        Ok((hcd, _)) if !ctx.policy.refusals(&hcd.spec).is_empty() => {
            untrack(ctx, &name);
            observed.install_refusals = ctx.policy.refusals(&hcd.spec);
            // Nothing running is touched; report what the workloads in the driver namespace do.
            old_status.as_ref().map(|_| ctx.policy.driver_namespace.clone())
        }
        Ok((hcd, children)) => {
            if let Some(aws) = &ctx.aws {
                // Before tracking, so the poller's first refresh after a restart knows the values
                // the operator applied before it.
                if let Some(r) = old_status.as_ref().and_then(|s| s.aws.as_ref()).and_then(|a| a.retag.as_ref()) {
                    aws.remember_retag(&name, r);
                }
                aws.track(&name, &hcd.spec);
            }
            if let Some(stack) = observed.snapshot_stack.as_mut()
                && stack.mode == conditions::SnapshotMode::Ours
            {
                errors = snapshots::apply_crds(&ctx.client, stack).await;
            }
            errors.extend(apply_children(ctx, &hcd, &children, uid.as_deref(), &mut observed).await?);
            pull_secrets(&hcd, &secrets_seen, &mut observed);
            // The driver namespace is the install-time one (a driver elsewhere is refused above),
            // where the RBAC watches look.
            observed.driver_rbac = ctx.rbac.check(caps.snapshot_api);
            if observed.snapshot_stack.as_ref().is_some_and(|s| s.mode == conditions::SnapshotMode::Ours) {
                observed.driver_rbac.extend(ctx.rbac.check_snapshot_controller());
            }
            let i = &hcd.spec.images;
            observed.images = Some(ImageSource {
                registry: i.registry.clone(),
                mirror: i.mirror.clone(),
                pull_secrets: i.pull_secrets.clone(),
                namespace: hcd.spec.namespace.clone(),
            });
            Some(hcd.spec.namespace.clone())
        }
    };
    let now = jiff::Timestamp::now();
    if let Some(ns) = namespace {
        observed.controller = Some(controller_rollout(ctx, &ns));
        observed.node = Some(node_rollout(ctx, &ns));
        if let Some(stack) = observed.snapshot_stack.as_mut()
            && stack.mode == conditions::SnapshotMode::Ours
        {
            stack.rollout = Some(snapshot_controller_rollout(ctx, &ns));
        }
        match ctx.pods.pods(&ns, &name) {
            Ok(Some(list)) => {
                let grace = observed.degraded_after;
                let grace = if grace.is_zero() { conditions::DEFAULT_DEGRADED_AFTER } else { grace };
                let mut facts: Vec<_> = list.iter().filter_map(|p| pods::facts(p, now, grace)).collect();
                facts.sort_by(|a, b| a.name.cmp(&b.name));
                observed.pods = Some(facts);
            }
            // The pod watch of this namespace has not listed yet: decide once it has (its list
            // triggers a reconcile), so the status is not written twice in a row.
            Ok(None) if errors.is_empty() => return Ok(Action::requeue(Duration::from_millis(500))),
            Ok(None) => {}
            Err(e) => observed.pod_watch_error = Some(e),
        }
    }
    observed.apply_errors = errors.iter().map(ToString::to_string).collect();
    let Written { status, deferred } = write_status(ctx, &api, obj, old_status.as_ref(), &observed).await?;
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => {
            // Wake up when a grace period runs out, even if nothing else changes, and for a
            // status write that waits.
            let review = conditions::next_review(&observed, Some(&status), now);
            let mut next = review.map_or(RESYNC, |d| (d + Duration::from_millis(100)).min(RESYNC));
            if let Some(d) = deferred {
                next = next.min(d);
            }
            // A held-back class is someone else's object, outside our label-filtered watches:
            // look again soon, so it is applied once that object is gone or the spec adopts it.
            if !observed.foreign_classes.is_empty() {
                next = next.min(HELD_CLASS_RECHECK);
            }
            // A VolumeAttributesClass kept for its claims is deleted soon after they let it go
            // (nothing watches claims).
            if !observed.kept_volume_attributes_classes.is_empty() {
                next = next.min(KEPT_CLASS_RECHECK);
            }
            Ok(Action::requeue(next))
        }
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
    let images = render::images::resolve(&hcd.spec);
    observed.driver_image = Some(images.driver);
    use k8s_openapi::api::storage::v1::{StorageClass, VolumeAttributesClass};

    use crate::render::VolumeSnapshotClass;
    let names_of = |kind: &str| children.iter().filter(|c| c.kind() == kind).map(|c| c.name()).collect();
    observed.storage_classes = names_of(&StorageClass::kind(&()));
    observed.volume_snapshot_classes = names_of(&VolumeSnapshotClass::kind(&()));
    observed.volume_attributes_classes = names_of(&VolumeAttributesClass::kind(&()));
    observed.requested_volume_attributes_classes = hcd.spec.volume_attributes_classes.len();
    let metrics = &hcd.spec.metrics;
    if metrics.enabled && metrics.service_monitor.enabled {
        let served = ctx.capabilities().service_monitor_api;
        observed.service_monitors = Some((served, names_of(&render::ServiceMonitor::kind(&()))));
    }
    // Foreign objects the spec lets us take over are applied over; a foreign class the spec does
    // not let us take over blocks that class only; any other foreign object blocks the driver.
    let survey = children::survey(&ctx.client, &ctx.caches, children, &name, uid).await?;
    let (adopted, refused): (Vec<_>, Vec<_>) =
        survey.foreign.into_iter().partition(|f| hcd.spec.adopts(&f.kind, &f.name));
    let (classes, blocking): (Vec<_>, Vec<_>) = refused.into_iter().partition(children::Foreign::is_class);
    if !blocking.is_empty() {
        observed.foreign = blocking.into_iter().chain(classes).map(|f| f.message).collect();
        return Ok(Vec::new());
    }
    observed.version = Some(images.version);
    let held: BTreeSet<&str> = classes.iter().map(|f| f.key.as_str()).collect();
    let applied: Vec<render::Child> = children.iter().filter(|c| !held.contains(c.key().as_str())).cloned().collect();
    observed.foreign_classes = classes.iter().map(|f| f.message.clone()).collect();
    let adopting: BTreeSet<String> = adopted.into_iter().map(|f| f.key).collect();
    let mut errors =
        children::apply(&ctx.client, &ctx.caches, &ctx.applied, &ctx.metrics, &applied, &adopting, &survey.absent)
            .await;
    if errors.is_empty() {
        let keep: BTreeSet<String> = children.iter().map(render::Child::key).collect();
        let pruned = children::prune(&ctx.client, &ctx.caches, &name, uid, &keep).await;
        errors.extend(pruned.errors);
        observed.kept_volume_attributes_classes = pruned.kept_classes;
    }
    if hcd.spec.adopts_any() {
        match children::release_leftovers(&ctx.client, &ctx.caches, children, &name, uid).await {
            Ok(leftovers) => observed.release_leftovers = leftovers,
            Err(e) => errors.push(e),
        }
    }
    Ok(errors)
}

/// The AWS poller stops polling a driver that is not (or no longer) in charge with a valid spec.
fn untrack(ctx: &Context, name: &str) {
    if let Some(aws) = &ctx.aws {
        aws.untrack(name);
    }
}

/// The driver in charge: one that already runs the driver's children keeps its place;
/// otherwise the oldest (creation time, then name) of those not being deleted. Timestamps have
/// second resolution, so ties are real; deciding from the children that exist (not from a
/// condition written earlier) keeps a later tie-break from handing the cluster over.
fn first_driver(ctx: &Context, me: &DynamicObject) -> Option<String> {
    let key = |d: &DynamicObject| {
        let runs = children::owns_any(&ctx.caches, &d.name_any(), d.uid().as_deref());
        (!runs, d.metadata.creation_timestamp.clone(), d.name_any())
    };
    let mut all: Vec<_> =
        ctx.drivers.state().iter().filter(|d| d.metadata.deletion_timestamp.is_none()).map(|d| key(d)).collect();
    if !all.iter().any(|(_, _, n)| *n == me.name_any()) {
        all.push(key(me));
    }
    all.sort();
    all.into_iter().next().map(|(_, _, n)| n)
}

/// Whether the cached workload has caught up with our last apply of it (the cache lags the apply
/// response; a stale copy would report the previous generation's finished rollout).
fn caught_up(ctx: &Context, kind: &str, namespace: &str, name: &str, generation: Option<i64>) -> bool {
    let applied = children::applied_generation(&ctx.applied, &format!("{kind}/{namespace}/{name}"));
    applied.is_none_or(|a| generation.is_some_and(|g| g >= a))
}

/// The controller Deployment's rollout, from the typed cache.
fn controller_rollout(ctx: &Context, namespace: &str) -> Rollout {
    use k8s_openapi::api::apps::v1::Deployment;
    let Some(d) = ctx.caches.deployment(namespace, controller_deployment::NAME) else { return Rollout::default() };
    let st = d.status.clone().unwrap_or_default();
    let desired = d.spec.replicas.unwrap_or(1);
    let fresh = caught_up(ctx, &Deployment::kind(&()), namespace, controller_deployment::NAME, d.metadata.generation);
    Rollout {
        replicas: ReplicaStatus::new(
            desired,
            st.ready_replicas.unwrap_or(0),
            st.updated_replicas.unwrap_or(0),
            st.available_replicas.unwrap_or(0),
        ),
        observed: fresh && st.observed_generation == d.metadata.generation,
    }
}

/// Our snapshot-controller Deployment's rollout, from the typed cache.
fn snapshot_controller_rollout(ctx: &Context, namespace: &str) -> Rollout {
    use k8s_openapi::api::apps::v1::Deployment;
    let name = render::snapshot_controller::NAME;
    let Some(d) = ctx.caches.deployment(namespace, name) else { return Rollout::default() };
    let st = d.status.clone().unwrap_or_default();
    let fresh = caught_up(ctx, &Deployment::kind(&()), namespace, name, d.metadata.generation);
    Rollout {
        replicas: ReplicaStatus::new(
            d.spec.replicas.unwrap_or(1),
            st.ready_replicas.unwrap_or(0),
            st.updated_replicas.unwrap_or(0),
            st.available_replicas.unwrap_or(0),
        ),
        observed: fresh && st.observed_generation == d.metadata.generation,
    }
}

/// The node DaemonSet's rollout, from the typed cache.
fn node_rollout(ctx: &Context, namespace: &str) -> Rollout {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let Some(d) = ctx.caches.daemon_set(namespace, node_daemonset::NAME) else { return Rollout::default() };
    let st = d.status.clone().unwrap_or_default();
    let fresh = caught_up(ctx, &DaemonSet::kind(&()), namespace, node_daemonset::NAME, d.metadata.generation);
    Rollout {
        replicas: ReplicaStatus::new(
            st.desired_number_scheduled,
            st.number_ready,
            st.updated_number_scheduled.unwrap_or(0),
            st.number_available.unwrap_or(0),
        ),
        observed: fresh && st.observed_generation == d.metadata.generation,
    }
}

/// What is known of the Secrets the driver names (pull Secrets, the static-key Secret), from
/// their watches by name. A Secret whose watch has not listed yet, or cannot list (RBAC granting
/// `get` only), is read once, metadata only: the operator never reads secret data.
async fn observe_secrets(ctx: &Context, hcd: &HardenedCsiDriver) -> Vec<(String, secrets::Seen)> {
    let mut names = hcd.spec.images.pull_secrets.clone();
    if let Some(s) = &hcd.spec.aws.identity.secret_ref {
        names.push(s.name.clone());
    }
    names.sort();
    names.dedup();
    let namespace = &hcd.spec.namespace;
    let mut seen = ctx.secrets.observe(&hcd.name_any(), namespace, &names);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    for (name, s) in &mut seen {
        if !matches!(s, secrets::Seen::Unknown | secrets::Seen::Error(_)) {
            continue;
        }
        *s = match api.get_metadata_opt(name).await {
            Ok(Some(m)) => secrets::Seen::Present(m.metadata.resource_version.unwrap_or_default()),
            Ok(None) => secrets::Seen::Absent,
            Err(kube::Error::Api(status)) if status.code == 403 => secrets::Seen::Error(format!(
                "the operator may read only the Secrets its installation names, and {namespace}/{name} is not one \
                 of them: add {name} to the chart value pullSecretCheck.secretNames (or fix the name in the spec)"
            )),
            Err(e) => match s {
                secrets::Seen::Error(watch) => secrets::Seen::Error(watch.clone()),
                _ => secrets::Seen::Error(ApiMessage(&e).to_string()),
            },
        };
    }
    seen
}

/// PullSecretsPresent's facts: which named pull Secrets are missing, or why it is not known.
fn pull_secrets(hcd: &HardenedCsiDriver, seen: &[(String, secrets::Seen)], observed: &mut Observed) {
    let names = &hcd.spec.images.pull_secrets;
    if names.is_empty() {
        return;
    }
    let mut missing = Vec::new();
    for n in names {
        match seen.iter().find(|(s, _)| s == n).map(|(_, s)| s) {
            Some(secrets::Seen::Present(_)) => {}
            Some(secrets::Seen::Error(e)) => {
                observed.pull_secret_check_error = Some(e.clone());
                return;
            }
            Some(secrets::Seen::Absent | secrets::Seen::Unknown) | None => missing.push(n.clone()),
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
    let name = obj.name_any();
    let uid = obj.uid();
    let force = obj.annotations().get(FORCE_DELETE_ANNOTATION).is_some_and(|v| v == "true");
    // "Runs nothing, guards nothing" needs positive evidence from three sides: the driver's own
    // record says it was never in charge, the synced caches hold none of its children, and a
    // live read finds none of its data-path objects. Anything else, and the guard counts volumes.
    let inactive = old.as_ref().and_then(|s| s.condition(conditions::ACTIVE)).is_some_and(|c| c.status == "False");
    // The operator can only ever have deployed into the install's driver namespace (its RBAC
    // grants nothing elsewhere), whatever the stored spec says.
    let namespace = ctx.policy.driver_namespace.as_str();
    let guarded = !inactive
        || children::owns_any(&ctx.caches, &name, uid.as_deref())
        || deletion::runs_data_path_live(&ctx.client, &name, namespace).await?;
    let (volumes, requests) =
        if guarded { deletion::volumes_in_use(&ctx.client).await? } else { (VolumesInUse::default(), 0) };
    if volumes.total() > 0 && !force {
        observed.deletion_blocked_by = Some(volumes);
        observed.controller =
            old.as_ref().and_then(|s| s.controller.clone()).map(|replicas| Rollout { replicas, observed: true });
        observed.node = old.as_ref().and_then(|s| s.node.clone()).map(|replicas| Rollout { replicas, observed: true });
        write_status(ctx, api, obj, old.as_ref(), &observed).await?;
        // Nothing watches volumes; recount on a timer, less often when a count costs many pages.
        let recheck = if requests <= 4 { Duration::from_secs(10) } else { Duration::from_secs(60) };
        return Ok(Action::requeue(recheck));
    }
    let errors =
        children::delete_all(&ctx.client, &ctx.caches, &ctx.policy.driver_namespace, &name, uid.as_deref()).await;
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    if volumes.total() > 0 {
        let stranded = volumes.summary();
        tracing::warn!(
            driver = %name,
            csi_persistent_volumes = volumes.csi_persistent_volumes,
            in_tree_persistent_volumes = volumes.in_tree_persistent_volumes,
            volume_attachments = volumes.volume_attachments,
            examples = %volumes.examples.join(","),
            "force-deleted the driver while volumes need it; volumes and EBS data are kept"
        );
        let ev = Event {
            type_: EventType::Warning,
            reason: "ForceDeleted".into(),
            note: Some(truncate(
                &format!(
                    "Removed the driver on csi.hardened.dev/force-delete while {stranded} still need it. Volumes and \
                    EBS data are kept, but they cannot be attached, mounted, detached or resized until an EBS CSI \
                    driver runs again."
                ),
                1000,
            )),
            action: "Delete".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&driver_resource())).await {
            tracing::debug!(error = %e, "event not published");
        }
    }
    deletion::set_finalizer(api, obj, false).await?;
    ctx.status_log.forget(&name);
    let types = old.iter().flat_map(|s| s.conditions.iter().map(|c| c.type_.clone()));
    ctx.metrics.forget_conditions(&name, types.collect::<Vec<_>>());
    tracing::info!(driver = %name, volumes_kept = volumes.total(), "driver removed");
    Ok(Action::await_change())
}

/// The driver's status as the driver cache holds it.
fn cached_status(obj: &DynamicObject) -> Option<HardenedCsiDriverStatus> {
    obj.data.get("status").and_then(|s| serde_json::from_value(s.clone()).ok())
}

/// Writes status (server-side apply of the status subresource) only when it changed, and
/// publishes an event for each condition whose status changed. A change that is progress only
/// is written at most once per `STATUS_COALESCE`: the caller requeues for the deferred write.
async fn write_status(
    ctx: &Context,
    api: &Api<DynamicObject>,
    obj: &DynamicObject,
    old: Option<&HardenedCsiDriverStatus>,
    observed: &Observed,
) -> Result<Written> {
    let now = Time(jiff::Timestamp::now());
    let new = conditions::build(old, observed, &now);
    ctx.metrics.set_conditions(&obj.name_any(), new.conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str())));
    if old.is_some_and(|o| conditions::same_status(o, &new)) {
        return Ok(Written { status: new, deferred: None });
    }
    let name = obj.name_any();
    // Progress alone (counts moving while nodes join or pods roll) waits for the coalescing
    // interval; the reconcile due then writes whatever is current.
    let last = ctx.status_log.written_at(&name);
    if let (Some(o), Some(last)) = (old, last)
        && conditions::progress_only(o, &new)
        && let Some(wait) = STATUS_COALESCE.checked_sub(last.elapsed()).filter(|w| !w.is_zero())
    {
        tracing::debug!(driver = %name, wait_ms = wait.as_millis() as u64, "progress only; status write coalesced");
        return Ok(Written { status: new, deferred: Some(wait) });
    }
    let patch =
        json!({"apiVersion": HardenedCsiDriver::api_version(&()), "kind": HardenedCsiDriver::kind(&()), "status": new});
    api.patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::Status { name: name.clone(), source })?;
    ctx.status_log.record(&name, cached_status(obj).as_ref(), &new);
    tracing::debug!(
        driver = %name,
        generation = ?new.observed_generation,
        ready = ?new.condition(conditions::READY).map(|c| (&c.status, &c.reason, &c.message)),
        "status written"
    );
    let reference = obj.object_ref(&driver_resource());
    for c in conditions::transitions(old, &new) {
        let decision = matches!(
            c.type_.as_str(),
            conditions::READY
                | conditions::DEGRADED
                | conditions::SPEC_VALID
                | conditions::ACTIVE
                | conditions::OWNERSHIP
                | conditions::DELETION_BLOCKED
                | conditions::PULL_SECRETS
                | conditions::PODS_HEALTHY
        );
        let retrying = c.type_ == conditions::RECONCILING && c.reason == "ApplyRetrying";
        if !decision && !retrying {
            continue;
        }
        let good = match c.type_.as_str() {
            conditions::DEGRADED | conditions::OWNERSHIP | conditions::DELETION_BLOCKED => c.status == "False",
            // An apply the API server refused, retried: a warning at once, before it stalls.
            conditions::RECONCILING => false,
            _ => c.status == "True",
        };
        // A condition seen for the first time is news only when something is wrong: a new
        // driver whose spec is valid and which is rolling out says so in its status, not in a
        // burst of events.
        let first = old.and_then(|o| o.condition(&c.type_)).is_none();
        if first && (good || c.reason == "RollingOut") {
            continue;
        }
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
    Ok(Written { status: new, deferred: None })
}

/// The status a reconcile decided, and how long its write waits when it is progress only.
struct Written {
    status: HardenedCsiDriverStatus,
    deferred: Option<Duration>,
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

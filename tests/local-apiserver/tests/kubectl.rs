//! kubectl conformance: runs the `local-apiserver` binary and drives it with the real kubectl
//! through the kubeconfig it writes (get as table, -o json/yaml, get -w, create -f, apply
//! --server-side, client-side apply, label, annotate, delete, api-resources, CRDs with printer
//! columns). Requires `kubectl` on PATH (preinstalled on the project's machines).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "support/process.rs"]
mod process;

use process::start;

/// Removes the test's manifest directory even when an assertion fails.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// (success, stdout and stderr together)
fn kubectl(kc: &Path, args: &[&str]) -> (bool, String) {
    let r = process::run(kc, args);
    (r.success, format!("{}{}", r.stdout, r.stderr))
}

fn ok(kc: &Path, args: &[&str]) -> String {
    let (success, text) = kubectl(kc, args);
    assert!(success, "kubectl {args:?} failed:\n{text}");
    text
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write manifest");
    p.to_string_lossy().into_owned()
}

const MANIFESTS: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: demo}
data: {mode: fast}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1"}]
"#;

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Cluster
  names: {plural: gadgets, singular: gadget, kind: Gadget, shortNames: [gd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Color, type: string, jsonPath: .spec.color}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              color: {type: string, enum: [red, blue]}
"#;

#[test]
fn kubectl_drives_the_server() {
    // One Node, so the Deployment's pods have somewhere to run.
    let srv = start("kubectl", &["--nodes", "1"]);
    let kc = srv.kubeconfig.clone();
    let dir = std::env::temp_dir().join(format!("local-apiserver-manifests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let _cleanup = TempDir(dir.clone());
    let manifests = write(&dir, "app.yaml", MANIFESTS);

    let version = ok(&kc, &["version"]);
    assert!(version.contains("Server Version: v1.33"), "{version}");
    let resources = ok(&kc, &["api-resources"]);
    for r in [
        "deployments",
        "daemonsets",
        "csidrivers",
        "storageclasses",
        "customresourcedefinitions",
        "leases",
        "poddisruptionbudgets",
    ] {
        assert!(resources.contains(r), "api-resources lists {r}:\n{resources}");
    }

    let created = ok(&kc, &["create", "-f", &manifests]);
    assert!(
        created.contains("configmap/settings created") && created.contains("deployment.apps/web created"),
        "{created}"
    );
    let (dup_ok, dup) = kubectl(&kc, &["create", "-f", &manifests]);
    assert!(!dup_ok && dup.contains("AlreadyExists"), "{dup}");

    // Generator subcommands send protobuf bodies.
    assert!(ok(&kc, &["create", "namespace", "demo"]).contains("namespace/demo created"));
    ok(
        &kc,
        &[
            "-n",
            "demo",
            "create",
            "secret",
            "docker-registry",
            "pull",
            "--docker-server=dhi.io",
            "--docker-username=u",
            "--docker-password=p",
        ],
    );
    ok(&kc, &["-n", "demo", "create", "configmap", "cfg", "--from-literal=k=v"]);
    ok(&kc, &["-n", "demo", "create", "serviceaccount", "sa"]);
    let secret_type = ok(&kc, &["-n", "demo", "get", "secret", "pull", "-o", "jsonpath={.type}"]);
    assert_eq!(secret_type, "kubernetes.io/dockerconfigjson");
    assert_eq!(ok(&kc, &["-n", "demo", "get", "cm", "cfg", "-o", "jsonpath={.data.k}"]), "v");

    let ns = ok(&kc, &["get", "namespaces"]);
    assert!(ns.lines().next().unwrap_or_default().split_whitespace().eq(["NAME", "STATUS", "AGE"]), "{ns}");
    assert!(ns.contains("kube-system") && ns.contains("Active"), "{ns}");
    // The controllers, the scheduler and the kubelet stand-in make the deployment ready.
    let mut table = String::new();
    for _ in 0..100 {
        table = ok(&kc, &["get", "deployments"]);
        if table.contains("2/2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(table.contains("READY") && table.contains("web") && table.contains("2/2"), "{table}");

    let rollout = ok(&kc, &["rollout", "status", "deployment/web", "--timeout=10s"]);
    assert!(rollout.contains("successfully rolled out"), "{rollout}");
    let waited = ok(&kc, &["wait", "--for=condition=Available", "deployment/web", "--timeout=10s"]);
    assert!(waited.contains("condition met"), "{waited}");

    let json: serde_json::Value =
        serde_json::from_str(&ok(&kc, &["get", "configmap", "settings", "-o", "json"])).expect("-o json parses");
    assert_eq!(json["data"]["mode"], "fast");
    let yaml = ok(&kc, &["get", "cm", "-l", "app=demo", "-o", "yaml"]);
    let parsed: serde_json::Value = serde_yaml_ng::from_str(&yaml).expect("-o yaml parses");
    assert_eq!(parsed["items"][0]["metadata"]["name"], "settings");

    assert!(ok(&kc, &["label", "configmap", "settings", "tier=backend"]).contains("labeled"));
    assert!(ok(&kc, &["annotate", "configmap", "settings", "note=hi"]).contains("annotated"));
    let labelled = ok(&kc, &["get", "cm", "-l", "tier=backend", "-o", "name"]);
    assert_eq!(labelled.trim(), "configmap/settings");

    // get -w: the initial row, then a row per change, until the watch is stopped.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kc)
        .arg("--cache-dir")
        .arg(kc.with_extension("cache"))
        .args(["get", "configmaps", "-w", "--request-timeout=0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w starts");
    let mut lines = BufReader::new(watch.stdout.take().expect("piped")).lines();
    let header = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(header.starts_with("NAME"), "{header}");
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.starts_with("settings"), "{first}");
    ok(&kc, &["label", "configmap", "settings", "watched=yes"]);
    let change = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(change.starts_with("settings"), "{change}");
    let _ = watch.kill();
    let _ = watch.wait();

    // Server-side apply (with kubectl's own validation on: the server advertises field
    // validation in /openapi/v3) and client-side apply.
    let applied = ok(&kc, &["apply", "--server-side", "-f", &manifests]);
    assert!(applied.contains("serverside-applied"), "{applied}");
    let changed = write(&dir, "app2.yaml", &MANIFESTS.replace("nginx:1", "nginx:2"));
    // kubectl create owns the image (operation Update), so changing it conflicts, like on a
    // real cluster, until forced.
    let (conflict_ok, conflict) = kubectl(&kc, &["apply", "--server-side", "--validate=false", "-f", &changed]);
    assert!(!conflict_ok && conflict.contains("conflict with \"kubectl-create\""), "{conflict}");
    ok(&kc, &["apply", "--server-side", "--force-conflicts", "--validate=false", "-f", &changed]);
    let image = ok(&kc, &["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert_eq!(image.trim(), "nginx:2");
    let csa = ok(&kc, &["apply", "-f", &manifests]);
    assert!(csa.contains("configured"), "{csa}");

    // CRDs: served after creation, printer columns in the table, gone after deletion.
    let crd = write(&dir, "crd.yaml", CRD);
    ok(&kc, &["apply", "--server-side", "-f", &crd]);
    let gadget = write(
        &dir,
        "gadget.yaml",
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g1}\nspec: {color: red}\n",
    );
    ok(&kc, &["apply", "--server-side", "-f", &gadget]);
    let gadgets = ok(&kc, &["get", "gadgets"]);
    assert!(gadgets.lines().next().unwrap_or_default().split_whitespace().eq(["NAME", "COLOR"]), "{gadgets}");
    assert!(gadgets.contains("g1") && gadgets.contains("red"), "{gadgets}");
    let bad = write(
        &dir,
        "bad.yaml",
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g2}\nspec: {color: green}\n",
    );
    let (bad_ok, bad_out) = kubectl(&kc, &["apply", "--server-side", "-f", &bad]);
    assert!(!bad_ok && bad_out.contains("spec.color") && bad_out.contains("Unsupported value"), "{bad_out}");
    ok(&kc, &["delete", "-f", &crd]);
    let (gone_ok, gone) = kubectl(&kc, &["get", "gadgets"]);
    // Fresh discovery says the type is gone; kubectl's cached discovery gets a 404 instead.
    assert!(
        !gone_ok
            && (gone.contains("the server doesn't have a resource type")
                || gone.contains("could not find the requested resource")),
        "{gone}"
    );

    let deleted = ok(&kc, &["delete", "-f", &manifests]);
    assert!(deleted.contains("deleted"), "{deleted}");
    let left = ok(&kc, &["get", "cm,deploy"]);
    assert!(left.contains("No resources found"), "{left}");
}

const REPLICA_SET: &str = r#"apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: solo}
spec:
  replicas: 1
  selector: {matchLabels: {app: solo}}
  template:
    metadata: {labels: {app: solo}}
    spec:
      containers: [{name: solo, image: "nginx:1"}]
"#;

fn scale_json(kc: &Path, kind: &str, name: &str) -> serde_json::Value {
    let raw = ok(kc, &["get", kind, name, "--subresource=scale", "-o", "json"]);
    serde_json::from_str(&raw).expect("a Scale as JSON")
}

/// `kubectl scale` goes through the autoscaling/v1 Scale subresource (discovery names it, then a
/// merge patch of `.../scale`); the Scale carries the workload's replicas and selector, a
/// precondition that does not hold is refused, and a negative count is invalid.
#[test]
fn kubectl_scale_uses_the_scale_subresource() {
    let srv = start("scale", &["--nodes", "1"]);
    let kc = srv.kubeconfig.clone();
    let dir = std::env::temp_dir().join(format!("local-apiserver-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let _cleanup = TempDir(dir.clone());
    ok(&kc, &["create", "-f", &write(&dir, "app.yaml", MANIFESTS)]);
    ok(&kc, &["create", "-f", &write(&dir, "rs.yaml", REPLICA_SET)]);

    let scaled = ok(&kc, &["scale", "deployment", "web", "--replicas=3"]);
    assert!(scaled.contains("deployment.apps/web scaled"), "{scaled}");
    assert_eq!(ok(&kc, &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "3");
    let scale = scale_json(&kc, "deployment", "web");
    assert_eq!((scale["kind"].as_str(), scale["apiVersion"].as_str()), (Some("Scale"), Some("autoscaling/v1")));
    assert_eq!(scale["spec"]["replicas"], 3, "{scale}");
    assert_eq!(scale["status"]["selector"], "app=web", "{scale}");
    let deploy: serde_json::Value =
        serde_json::from_str(&ok(&kc, &["get", "deploy", "web", "-o", "json", "--show-managed-fields"])).unwrap();
    assert_eq!(scale["metadata"]["resourceVersion"], deploy["metadata"]["resourceVersion"]);
    let scaler =
        deploy["metadata"]["managedFields"].as_array().into_iter().flatten().find(|e| e["subresource"] == "scale");
    assert_eq!(scaler.map(|e| e["fieldsV1"].clone()), Some(serde_json::json!({"f:spec": {"f:replicas": {}}})));

    // --current-replicas is a precondition kubectl checks on the Scale it reads.
    let (wrong_ok, wrong) = kubectl(&kc, &["scale", "deployment", "web", "--current-replicas=5", "--replicas=1"]);
    assert!(!wrong_ok && wrong.contains("Expected replicas to be 5, was 3"), "{wrong}");
    ok(&kc, &["scale", "deployment", "web", "--current-replicas=3", "--replicas=0"]);
    assert_eq!(ok(&kc, &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "0");
    assert_eq!(scale_json(&kc, "deployment", "web")["spec"], serde_json::json!({}), "replicas 0 is omitted");

    let (neg_ok, neg) = kubectl(
        &kc,
        &["patch", "deployment", "web", "--subresource=scale", "--type=merge", "-p", r#"{"spec":{"replicas":-1}}"#],
    );
    assert!(!neg_ok && neg.contains("spec.replicas") && neg.contains("must be greater than or equal to 0"), "{neg}");

    // The same subresource serves ReplicaSets.
    assert!(ok(&kc, &["scale", "rs", "solo", "--replicas=2"]).contains("replicaset.apps/solo scaled"));
    assert_eq!(scale_json(&kc, "rs", "solo")["spec"]["replicas"], 2);
    // Other kinds have none, as on a real server.
    let (ds_ok, ds) = kubectl(&kc, &["get", "--raw", "/api/v1/namespaces/default/configmaps/settings/scale"]);
    assert!(!ds_ok && ds.contains("NotFound"), "{ds}");
}

/// A patch that sets `metadata.managedFields` to one empty entry clears them, as on a real server
/// (Kubernetes docs, "Clearing managedFields"); the next write starts the bookkeeping again.
#[test]
fn kubectl_clears_managed_fields_with_an_empty_entry() {
    let srv = start("managed-fields", &[]);
    let kc = srv.kubeconfig.clone();
    ok(&kc, &["create", "configmap", "cfg", "--from-literal=k=v"]);
    ok(&kc, &["label", "configmap", "cfg", "tier=backend"]);
    let managers = |kc: &Path| -> Vec<String> {
        let raw = ok(kc, &["get", "cm", "cfg", "-o", "json", "--show-managed-fields"]);
        let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
        v["metadata"]["managedFields"].as_array().into_iter().flatten().map(|e| e["manager"].to_string()).collect()
    };
    assert_eq!(managers(&kc).len(), 2, "kubectl-create and kubectl-label");
    let reset = r#"[{"op":"replace","path":"/metadata/managedFields","value":[{}]}]"#;
    ok(&kc, &["patch", "configmap", "cfg", "--type=json", "-p", reset]);
    assert!(managers(&kc).is_empty(), "{:?}", managers(&kc));
    ok(&kc, &["label", "configmap", "cfg", "tier=front", "--overwrite"]);
    assert_eq!(managers(&kc), ["\"kubectl-label\""]);
}

/// kubectl's stdout alone (version skew warnings go to stderr).
fn stdout_of(kc: &Path, args: &[&str]) -> String {
    let r = process::run(kc, args);
    assert!(r.success, "kubectl {args:?} failed:\n{}", r.stderr);
    r.stdout
}

#[test]
fn kubectl_sees_a_control_plane_upgrade() {
    let srv = start("version", &[]);
    let kc = srv.kubeconfig.clone();
    let dir = std::env::temp_dir().join(format!("local-apiserver-version-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let _cleanup = TempDir(dir.clone());
    let server_version = || -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&stdout_of(&kc, &["version", "-o", "json"])).expect("version -o json parses");
        v["serverVersion"].clone()
    };
    let v = server_version();
    assert_eq!((v["major"].as_str(), v["minor"].as_str()), (Some("1"), Some("33")), "{v}");
    let resources = ok(&kc, &["api-resources", "--api-group=storage.k8s.io", "-o", "name"]);
    assert!(!resources.contains("volumeattributesclasses"), "{resources}");

    // The control endpoint, driven by kubectl itself (POST of the file's body).
    let body = write(&dir, "version.json", r#"{"kubernetesVersion": "1.34.1"}"#);
    let answer = stdout_of(&kc, &["create", "--raw", "/local-apiserver/version", "-f", &body]);
    assert!(answer.contains("\"gitVersion\":\"v1.34.1-local\""), "{answer}");
    let v = server_version();
    assert_eq!((v["minor"].as_str(), v["gitVersion"].as_str()), (Some("34"), Some("v1.34.1-local")), "{v}");
    let resources = ok(&kc, &["api-resources", "--api-group=storage.k8s.io", "-o", "name"]);
    assert!(resources.contains("volumeattributesclasses.storage.k8s.io"), "{resources}");
    let vac = write(
        &dir,
        "vac.yaml",
        "apiVersion: storage.k8s.io/v1\nkind: VolumeAttributesClass\nmetadata: {name: gp3-fast}\n\
                                       driverName: ebs.csi.aws.com\nparameters: {iops: \"6000\"}\n",
    );
    ok(&kc, &["create", "-f", &vac]);
    let table = ok(&kc, &["get", "vac"]);
    assert!(table.contains("DRIVERNAME") && table.contains("gp3-fast") && table.contains("ebs.csi.aws.com"), "{table}");

    let bad = write(&dir, "bad.json", r#"{"kubernetesVersion": "one.two"}"#);
    let (success, text) = kubectl(&kc, &["create", "--raw", "/local-apiserver/version", "-f", &bad]);
    assert!(!success, "{text}");
    assert!(text.contains("is not a Kubernetes version"), "{text}");
    assert_eq!(server_version()["minor"], "34");
}

const WORKLOADS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1"}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: "agent:1"}]
"#;

const BROKEN: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: private}
spec:
  progressDeadlineSeconds: 2
  selector: {matchLabels: {app: private}}
  template:
    metadata: {labels: {app: private}}
    spec:
      containers: [{name: driver, image: "dhi.io/aws-ebs-csi-driver:1.64.0"}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: crashy}
spec:
  selector: {matchLabels: {app: crashy}}
  template:
    metadata: {labels: {app: crashy}}
    spec:
      containers: [{name: app, image: "app:crash"}]
"#;

/// Polls `kubectl get pods -l SELECTOR` until a row's STATUS is `status`; returns the table.
fn pods_until(kc: &Path, selector: &str, status: &str) -> String {
    let mut table = String::new();
    for _ in 0..300 {
        table = ok(kc, &["get", "pods", "-l", selector]);
        if table.lines().skip(1).any(|l| l.split_whitespace().nth(2) == Some(status)) {
            return table;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no pod of {selector} reached STATUS {status}:\n{table}");
}

#[test]
fn kubectl_rollout_status_and_pod_states() {
    // Two Nodes; pulls slow enough (1 s) that kubectl sees a rollout in progress.
    let srv = start("rollout", &["--nodes", "2", "--image-pull-ms", "1000", "--crashing-image", "app:crash"]);
    let kc = srv.kubeconfig.clone();
    let dir = std::env::temp_dir().join(format!("local-apiserver-rollout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let _cleanup = TempDir(dir.clone());
    ok(&kc, &["create", "-f", &write(&dir, "workloads.yaml", WORKLOADS)]);

    let done = ok(&kc, &["rollout", "status", "deployment/web", "--timeout=30s"]);
    assert!(done.contains("deployment \"web\" successfully rolled out"), "{done}");
    let done = ok(&kc, &["rollout", "status", "daemonset/agent", "--timeout=30s"]);
    assert!(done.contains("daemon set \"agent\" successfully rolled out"), "{done}");
    let table = ok(&kc, &["get", "pods", "-o", "wide"]);
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header[..5], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{table}");
    assert!(header.contains(&"IP") && header.contains(&"NODE"), "{table}");
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "2 web pods and one agent per node:\n{table}");
    assert!(rows.iter().all(|r| r.contains(" 1/1 ") && r.contains(" Running ")), "{table}");
    assert!(rows.iter().any(|r| r.contains("node-0")) && rows.iter().any(|r| r.contains("node-1")), "{table}");
    let ds = ok(&kc, &["get", "ds", "agent"]);
    let header: Vec<&str> = ds.lines().next().unwrap_or_default().split_whitespace().collect();
    let want = ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE", "SELECTOR", "AGE"];
    assert_eq!(header, want, "{ds}");
    let row: Vec<&str> = ds.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row[..7], ["agent", "2", "2", "2", "2", "2", "<none>"], "{ds}");
    let rs = ok(&kc, &["get", "rs", "-l", "app=web"]);
    assert!(
        rs.lines().next().unwrap_or_default().split_whitespace().eq(["NAME", "DESIRED", "CURRENT", "READY", "AGE"])
    );

    // A rolling update, followed by kubectl as it happens.
    ok(&kc, &["set", "image", "deployment/web", "web=nginx:2"]);
    let rolled = ok(&kc, &["rollout", "status", "deployment/web", "--timeout=30s"]);
    assert!(rolled.contains("Waiting for deployment \"web\" rollout to finish"), "{rolled}");
    assert!(rolled.contains("successfully rolled out"), "{rolled}");
    let history = ok(&kc, &["rollout", "history", "deployment/web"]);
    assert!(history.contains("REVISION") && history.lines().count() >= 4, "{history}");
    ok(&kc, &["set", "image", "daemonset/agent", "agent=agent:2"]);
    let rolled = ok(&kc, &["rollout", "status", "daemonset/agent", "--timeout=30s"]);
    assert!(rolled.contains("Waiting for daemon set \"agent\" rollout to finish"), "{rolled}");
    assert!(rolled.contains("successfully rolled out"), "{rolled}");
    let history = ok(&kc, &["rollout", "history", "daemonset/agent"]);
    assert!(history.lines().filter(|l| l.trim_start().starts_with(['1', '2'])).count() == 2, "{history}");

    // A dhi.io image without a pull secret, and a crashing image.
    ok(&kc, &["create", "-f", &write(&dir, "broken.yaml", BROKEN)]);
    pods_until(&kc, "app=private", "ErrImagePull");
    pods_until(&kc, "app=private", "ImagePullBackOff");
    let (stalled, out) = kubectl(&kc, &["rollout", "status", "deployment/private", "--timeout=30s"]);
    assert!(!stalled && out.contains("exceeded its progress deadline"), "{out}");
    let described = ok(&kc, &["describe", "pods", "-l", "app=private"]);
    assert!(described.contains("Failed to pull image \"dhi.io/aws-ebs-csi-driver:1.64.0\""), "{described}");
    assert!(described.contains("401 Unauthorized") && described.contains("Back-off pulling image"), "{described}");
    let table = pods_until(&kc, "app=crashy", "CrashLoopBackOff");
    let restarts = table.lines().nth(1).and_then(|l| l.split_whitespace().nth(3)).unwrap_or_default().to_string();
    assert!(restarts.parse::<u32>().is_ok_and(|n| n >= 1), "{table}");

    // Rollback: the revision-1 ReplicaSet becomes revision 3 and runs again.
    ok(&kc, &["rollout", "undo", "deployment/web", "--to-revision=1"]);
    let undone = ok(&kc, &["rollout", "status", "deployment/web", "--timeout=30s"]);
    assert!(undone.contains("successfully rolled out"), "{undone}");
    let image = ok(&kc, &["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert_eq!(image, "nginx:1");
    let revision = ok(
        &kc,
        &["get", "deploy", "web", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"],
    );
    assert_eq!(revision, "3");
    assert_eq!(ok(&kc, &["get", "rs", "-l", "app=web", "-o", "name"]).lines().count(), 2, "rolled back, not recreated");

    // A Node leaves: its pods are collected, the web pods are replaced on the other Node and the
    // DaemonSet wants one pod less; a Node created with kubectl joins.
    ok(&kc, &["delete", "node", "node-1"]);
    let mut wide = String::new();
    for _ in 0..300 {
        wide = ok(&kc, &["get", "pods", "-l", "app in (web, agent)", "-o", "wide"]);
        let rows: Vec<&str> = wide.lines().skip(1).collect();
        if rows.len() == 3 && rows.iter().all(|r| r.contains("node-0") && r.contains(" Running ")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!wide.contains("node-1") && wide.lines().count() == 4, "{wide}");
    let node = write(&dir, "node.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: node-9}\n");
    ok(&kc, &["create", "-f", &node]);
    let nodes = ok(&kc, &["get", "nodes"]);
    assert!(nodes.lines().any(|l| l.starts_with("node-9") && l.contains(" True ")), "{nodes}");
    let agents = ok(&kc, &["rollout", "status", "daemonset/agent", "--timeout=30s"]);
    assert!(agents.contains("successfully rolled out"), "{agents}");
    let placed = ok(&kc, &["get", "pods", "-l", "app=agent", "-o", "jsonpath={.items[*].spec.nodeName}"]);
    let mut placed: Vec<&str> = placed.split_whitespace().collect();
    placed.sort();
    assert_eq!(placed, ["node-0", "node-9"]);
}

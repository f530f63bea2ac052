//! Defaulting of built-in kinds, as the real server does on every create and update (so a
//! field a manager stops applying comes back with its default, like on a real cluster):
//! workload specs and their pod templates, containers and probes, Services, storage kinds,
//! Secrets (`stringData` is folded into base64 `data`).

use serde_json::{Map, Value, json};

use crate::registry::ResourceInfo;

/// Sets `key` to `v` when absent or null.
fn default(obj: &mut Value, key: &str, v: Value) {
    if let Some(m) = obj.as_object_mut()
        && m.get(key).is_none_or(Value::is_null)
    {
        m.insert(key.to_string(), v);
    }
}

fn each(list: &mut Value, f: impl Fn(&mut Value)) {
    if let Some(items) = list.as_array_mut() {
        items.iter_mut().for_each(f);
    }
}

pub fn apply(info: &ResourceInfo, obj: &mut Value) {
    match (info.group.as_str(), info.kind.as_str()) {
        ("apps", "Deployment") => {
            let spec = &mut obj["spec"];
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            default(spec, "strategy", json!({"type": "RollingUpdate"}));
            if spec["strategy"]["type"] == "RollingUpdate" {
                let s = &mut spec["strategy"];
                default(s, "rollingUpdate", json!({}));
                default(&mut s["rollingUpdate"], "maxUnavailable", json!("25%"));
                default(&mut s["rollingUpdate"], "maxSurge", json!("25%"));
            }
            pod_template(&mut spec["template"]);
        }
        ("apps", "ReplicaSet") => {
            default(&mut obj["spec"], "replicas", json!(1));
            pod_template(&mut obj["spec"]["template"]);
        }
        ("apps", "DaemonSet") => {
            let spec = &mut obj["spec"];
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "updateStrategy", json!({"type": "RollingUpdate"}));
            if spec["updateStrategy"]["type"] == "RollingUpdate" {
                let s = &mut spec["updateStrategy"];
                default(s, "rollingUpdate", json!({}));
                default(&mut s["rollingUpdate"], "maxUnavailable", json!(1));
                default(&mut s["rollingUpdate"], "maxSurge", json!(0));
            }
            pod_template(&mut spec["template"]);
        }
        ("", "Pod") => {
            pod_spec(&mut obj["spec"]);
            default(&mut obj["spec"], "serviceAccountName", json!("default"));
        }
        ("", "Service") => {
            let spec = &mut obj["spec"];
            default(spec, "sessionAffinity", json!("None"));
            if spec["type"] != "ExternalName" {
                default(spec, "internalTrafficPolicy", json!("Cluster"));
            }
            each(&mut spec["ports"], |p| {
                default(p, "protocol", json!("TCP"));
                let port = p["port"].clone();
                default(p, "targetPort", port);
            });
        }
        ("", "Secret") => {
            default(obj, "type", json!("Opaque"));
            if let Some(Value::Object(string_data)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
                if !obj["data"].is_object() {
                    obj["data"] = Value::Object(Map::new());
                }
                for (k, v) in string_data {
                    let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                    obj["data"][k] = json!(crate::protobuf::base64(text.as_bytes()));
                }
            }
        }
        ("", "PersistentVolumeClaim") => default(&mut obj["spec"], "volumeMode", json!("Filesystem")),
        ("", "PersistentVolume") => {
            default(&mut obj["spec"], "persistentVolumeReclaimPolicy", json!("Retain"));
            default(&mut obj["spec"], "volumeMode", json!("Filesystem"));
        }
        ("storage.k8s.io", "StorageClass") => {
            default(obj, "reclaimPolicy", json!("Delete"));
            default(obj, "volumeBindingMode", json!("Immediate"));
        }
        ("storage.k8s.io", "CSIDriver") => {
            let spec = &mut obj["spec"];
            if !spec.is_object() {
                *spec = json!({});
            }
            default(spec, "attachRequired", json!(true));
            default(spec, "podInfoOnMount", json!(false));
            default(spec, "requiresRepublish", json!(false));
            default(spec, "storageCapacity", json!(false));
            default(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
            default(spec, "volumeLifecycleModes", json!(["Persistent"]));
            default(spec, "seLinuxMount", json!(false));
        }
        _ => {}
    }
}

fn pod_template(template: &mut Value) {
    if template.is_object() {
        pod_spec(&mut template["spec"]);
    }
}

fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        each(&mut spec[list], container);
    }
    each(&mut spec["volumes"], |v| {
        for kind in ["secret", "configMap", "projected"] {
            if v[kind].is_object() {
                default(&mut v[kind], "defaultMode", json!(420));
            }
        }
        if v["hostPath"].is_object() {
            default(&mut v["hostPath"], "type", json!(""));
        }
    });
}

fn container(c: &mut Value) {
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    let image = c["image"].as_str().unwrap_or_default().to_string();
    // The tag is what follows the last ':' after the last '/' (a registry port is not a tag).
    let name_part = image.rsplit('/').next().unwrap_or_default();
    let digest = image.contains('@');
    let tag = name_part.split_once(':').map(|(_, t)| t);
    let policy = if !digest && (tag.is_none() || tag == Some("latest")) { "Always" } else { "IfNotPresent" };
    default(c, "imagePullPolicy", json!(policy));
    each(&mut c["ports"], |p| default(p, "protocol", json!("TCP")));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if c[probe].is_object() {
            let p = &mut c[probe];
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
        }
    }
    each(&mut c["env"], |e| {
        if e["valueFrom"]["fieldRef"].is_object() {
            default(&mut e["valueFrom"]["fieldRef"], "apiVersion", json!("v1"));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn deployments_get_the_real_defaults() {
        let info = Registry::default().lookup("apps", "v1", "deployments").unwrap();
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "dhi.io/x:1.2@sha256:abc"},
            {"name": "c", "image": "localhost:5000/y"}]}}}});
        apply(&info, &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let cs = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["imagePullPolicy"], "Always");
        assert_eq!(cs[1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(cs[2]["imagePullPolicy"], "Always");
        assert_eq!(cs[0]["ports"][0]["protocol"], "TCP");
        assert_eq!(d["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        let before = d.clone();
        apply(&info, &mut d);
        assert_eq!(d, before, "defaulting is idempotent");
    }

    #[test]
    fn secrets_fold_string_data_into_data() {
        let info = Registry::default().lookup("", "v1", "secrets").unwrap();
        let mut s = json!({"stringData": {"a": "hi"}, "data": {"b": "eA=="}});
        apply(&info, &mut s);
        assert_eq!(s, json!({"type": "Opaque", "data": {"a": "aGk=", "b": "eA=="}}));
    }
}

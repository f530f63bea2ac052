//! Printer columns of the built-in kinds, for `kubectl get` tables (a subset of the real
//! server's columns; Name first, Age last). CRDs bring their own `additionalPrinterColumns`.

use crate::registry::Column;

pub fn col(name: &str, type_: &str, json_path: &str, description: &str) -> Column {
    Column {
        name: name.into(),
        type_: type_.into(),
        format: String::new(),
        description: description.into(),
        priority: 0,
        json_path: json_path.into(),
    }
}

/// A column `kubectl get -o wide` shows.
fn wide(mut c: Column) -> Column {
    c.priority = 1;
    c
}

pub fn builtin_columns(plural: &str, group: &str) -> Vec<Column> {
    let mut cols = vec![col("Name", "string", ".metadata.name", "Name must be unique within a namespace.")];
    cols[0].format = "name".into();
    let extra: Vec<Column> = match (group, plural) {
        ("", "namespaces") => vec![col("Status", "string", ".status.phase", "The phase of the namespace.")],
        ("", "pods") => vec![
            col(
                "Ready",
                "string",
                "ratio:.status.containerStatuses[?(@.ready==true)]:.spec.containers",
                "Ready containers.",
            ),
            col("Status", "string", "printer:pod-status", "The aggregate status of the containers in this pod."),
            col("Restarts", "string", "printer:pod-restarts", "The number of times the containers were restarted."),
            wide(col("IP", "string", ".status.podIP", "The IP address of the pod.")),
            wide(col("Node", "string", ".spec.nodeName", "The node the pod is bound to.")),
            wide(col("Nominated Node", "string", ".status.nominatedNodeName", "The node preemption nominated.")),
            wide(col("Readiness Gates", "string", ".spec.readinessGates[*].conditionType", "Readiness gates.")),
        ],
        ("", "services") => vec![
            col("Type", "string", ".spec.type", "The type of the service."),
            col("Cluster-IP", "string", ".spec.clusterIP", "The cluster IP."),
        ],
        ("", "secrets") => vec![col("Type", "string", ".type", "The type of the secret.")],
        ("", "persistentvolumeclaims") => vec![
            col("Status", "string", ".status.phase", "The phase of the claim."),
            col("Volume", "string", ".spec.volumeName", "The bound volume."),
        ],
        ("", "persistentvolumes") => vec![
            col("Status", "string", ".status.phase", "The phase of the volume."),
            col("Claim", "string", ".spec.claimRef.name", "The bound claim."),
        ],
        ("apps", "deployments") => vec![
            col("Ready", "string", "ratio:.status.readyReplicas:.spec.replicas", "Ready replicas."),
            col("Up-to-date", "integer", ".status.updatedReplicas", "Updated replicas."),
            col("Available", "integer", ".status.availableReplicas", "Available replicas."),
        ],
        ("apps", "replicasets") => vec![
            col("Desired", "integer", ".spec.replicas", "Number of desired pods."),
            col("Current", "integer", ".status.replicas", "Number of actual replicas."),
            col("Ready", "integer", ".status.readyReplicas", "Number of ready replicas."),
        ],
        ("apps", "controllerrevisions") => vec![
            col("Controller", "string", ".metadata.ownerReferences[0].name", "Controller of the revision."),
            col("Revision", "integer", ".revision", "Revision number."),
        ],
        ("apps", "daemonsets") => vec![
            col("Desired", "integer", ".status.desiredNumberScheduled", "Desired pods."),
            col("Current", "integer", ".status.currentNumberScheduled", "Current pods."),
            col("Ready", "integer", ".status.numberReady", "Ready pods."),
            col("Up-to-date", "integer", ".status.updatedNumberScheduled", "Updated pods."),
            col("Available", "integer", ".status.numberAvailable", "Available pods."),
            col("Node Selector", "string", "printer:node-selector", "The node selector of the pods."),
        ],
        ("storage.k8s.io", "storageclasses") => vec![col("Provisioner", "string", ".provisioner", "The provisioner.")],
        ("storage.k8s.io", "volumeattributesclasses") => {
            vec![col("DriverName", "string", ".driverName", "The CSI driver that handles the class.")]
        }
        ("storage.k8s.io", "volumeattachments") => vec![
            col("Attacher", "string", ".spec.attacher", "The attacher."),
            col("Node", "string", ".spec.nodeName", "The node."),
            col("Attached", "boolean", ".status.attached", "Whether attached."),
        ],
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            vec![col("Role", "string", ".roleRef.name", "The bound role.")]
        }
        ("coordination.k8s.io", "leases") => vec![col("Holder", "string", ".spec.holderIdentity", "The holder.")],
        ("", "events") => vec![
            col("Type", "string", ".type", "Normal or Warning."),
            col("Reason", "string", ".reason", "Why the event happened."),
            col("Object", "string", ".involvedObject.name", "The object it is about."),
            col("Message", "string", ".message", "What happened."),
        ],
        ("events.k8s.io", "events") => vec![
            col("Type", "string", ".type", "Normal or Warning."),
            col("Reason", "string", ".reason", "Why the event happened."),
            col("Object", "string", ".regarding.name", "The object it is about."),
            col("Note", "string", ".note", "What happened."),
        ],
        ("", "nodes") => vec![
            col("Status", "string", ".status.conditions[?(@.type==\"Ready\")].status", "Ready condition."),
            col("Version", "string", ".status.nodeInfo.kubeletVersion", "Kubelet version."),
        ],
        ("storage.k8s.io", "csidrivers") => vec![
            col("AttachRequired", "boolean", ".spec.attachRequired", "Whether attach is required."),
            col("PodInfoOnMount", "boolean", ".spec.podInfoOnMount", "Whether pod info is passed on mount."),
        ],
        ("storage.k8s.io", "csinodes") => {
            vec![col("Drivers", "string", ".spec.drivers[*].name", "Registered drivers.")]
        }
        ("policy", "poddisruptionbudgets") => vec![
            col("Min Available", "string", ".spec.minAvailable", "Minimum available pods."),
            col("Max Unavailable", "string", ".spec.maxUnavailable", "Maximum unavailable pods."),
        ],
        _ => Vec::new(),
    };
    // Age after the default columns, before the ones only `-o wide` shows (as the real printers).
    let (default, wide): (Vec<Column>, Vec<Column>) = extra.into_iter().partition(|c| c.priority == 0);
    cols.extend(default);
    cols.push(col("Age", "date", ".metadata.creationTimestamp", "Time since creation."));
    cols.extend(wide);
    cols
}

{{/*
The operator's cluster-wide rules. Each rule names the code path that needs it; keep in step
with `hardened-csi-operator operator-rbac` (tests/manifests/test_rbac.py fails otherwise).
*/}}
{{- define "hco.clusterRules" -}}
# Watch the HardenedCsiDriver resources (the controller's primary watch).
- apiGroups: ["csi.hardened.dev"]
  resources: ["hardenedcsidrivers"]
  verbs: ["get", "list", "watch", "patch"]
# Server-side apply of status (conditions, observedGeneration, facts).
- apiGroups: ["csi.hardened.dev"]
  resources: ["hardenedcsidrivers/status"]
  verbs: ["patch"]
# Owner references with blockOwnerDeletion on the children need update on <owner>/finalizers.
- apiGroups: ["csi.hardened.dev"]
  resources: ["hardenedcsidrivers/finalizers"]
  verbs: ["update"]
# The driver's children: server-side apply (create, patch), watches (get, list, watch) and
# removal of children that fall out of the spec (delete).
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments", "daemonsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles", "clusterrolebindings", "roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["storage.k8s.io"]
  resources: ["csidrivers", "storageclasses"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["snapshot.storage.k8s.io"]
  resources: ["volumesnapshotclasses"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The driver's roles carry rules the operator does not hold (PV writes, volumeattachments, ...):
# writing and binding them needs escalate and bind, limited here to those roles by name.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles"]
  verbs: ["bind", "escalate"]
  resourceNames:
    - ebs-csi-node-role
    - ebs-external-attacher-role
    - ebs-external-provisioner-role
    - ebs-external-resizer-role
    - ebs-external-snapshotter-role
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles"]
  verbs: ["bind", "escalate"]
  resourceNames:
    - ebs-csi-leases-role
# Status facts: which PVs the driver serves (inventory), and whether the snapshot API exists.
- apiGroups: [""]
  resources: ["persistentvolumes"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
# IRSA probe: a short-lived token for the driver's ServiceAccount, exchanged with STS.
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
# Events on condition transitions and errors.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* Leader election: the Lease lives in the release namespace only. */}}
{{- define "hco.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end -}}

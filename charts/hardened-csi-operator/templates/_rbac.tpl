{{/*
The operator's rules, one per call the code makes (src/commands/operator_rbac.rs says why each exists);
kept equal to `hardened-csi-operator operator-rbac` by tests/manifests/test_rbac.py.
*/}}
{{- define "hco.clusterRules" -}}
# Watch the HardenedCsiDriver resources; patch adds and removes the cleanup finalizer.
- apiGroups: ["csi.hardened.dev"]
  resources: ["hardenedcsidrivers"]
  verbs: ["get", "list", "watch", "patch"]
# Server-side apply of status (conditions, observedGeneration, facts).
- apiGroups: ["csi.hardened.dev"]
  resources: ["hardenedcsidrivers/status"]
  verbs: ["patch"]
# Children carry owner references with blockOwnerDeletion; clusters with the
# OwnerReferencesPermissionEnforcement admission plugin require this to set them.
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
# The driver pods' NetworkPolicies.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The driver's metrics Service (spec.metrics.enabled).
- apiGroups: [""]
  resources: ["services"]
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
# Whether the snapshot API is installed (read only).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
# Deletion guard (no driver removal under live volumes) and the inventory's PV watch (orphans, leaks).
- apiGroups: [""]
  resources: ["persistentvolumes"]
  verbs: ["list", "watch"]
# Deletion guard and the inventory's stuck-attachment watch (read only).
- apiGroups: ["storage.k8s.io"]
  resources: ["volumeattachments"]
  verbs: ["list", "watch"]
# The inventory: Nodes' providerID (the instance AttachVolume is probed on, gone nodes; read only).
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["list", "watch"]
# The inventory: snapshots that no VolumeSnapshotContent references (read only).
- apiGroups: ["snapshot.storage.k8s.io"]
  resources: ["volumesnapshotcontents"]
  verbs: ["list", "watch"]
# IAM preflight as the driver: a short-lived token for its ServiceAccount (IRSA via STS, Pod Identity via EKS Auth).
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
# Events on condition transitions and errors.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/*
The PullSecretsPresent condition and the controller's identity hash: the operator watches the pull
Secrets and the static-key Secret one by one by name (a list/watch with fieldSelector
metadata.name=NAME is authorised as NAME) and requests their metadata only (never their data), in
the driver namespace. RBAC cannot tell a metadata request from a read, so the grant is `get`,
`list` and `watch` limited by resourceNames to exactly the Secrets the driver names.
*/}}
{{- define "hco.pullSecretRules" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
  resourceNames:
    {{- range (include "hco.pullSecretNames" . | fromJsonArray) }}
    - {{ . }}
    {{- end }}
{{- end -}}

{{/* PodsHealthy: the driver pods' container statuses, read only. */}}
{{- define "hco.podRules" -}}
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
{{- end -}}

{{/* Driver namespace and pull Secret names: from the driver block when it sets them. */}}
{{- define "hco.driverNamespace" -}}
{{- $ns := .Values.pullSecretCheck.namespace -}}
{{- if and .Values.driver.enabled .Values.driver.spec.namespace -}}
{{- $ns = .Values.driver.spec.namespace -}}
{{- end -}}
{{- $ns -}}
{{- end -}}

{{- define "hco.pullSecretNames" -}}
{{- $names := .Values.pullSecretCheck.secretNames -}}
{{- if .Values.driver.enabled -}}
{{- with .Values.driver.spec.images -}}
{{- with .pullSecrets -}}
{{- $names = . -}}
{{- end -}}
{{- end -}}
{{- with ((((.Values.driver.spec).aws).identity).secretRef) -}}
{{- if and .name (not (has .name $names)) -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/* Leader election: the Lease lives in the release namespace only. */}}
{{- define "hco.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end -}}

{{/*
The operator's rules, one per call the code makes (src/commands/operator_rbac.rs says why each exists);
kept equal to `hardened-csi-operator operator-rbac` by tests/manifests/test_rbac.py.
*/}}
{{- define "hco.clusterRules" -}}
# Watch the HardenedCsiDriver resources; patch adds and removes the cleanup finalizer.
- apiGroups: ["csi.hardened.dev"]
  resources: ["hardenedcsidrivers"]
  verbs: ["list", "watch", "patch"]
# Server-side apply of status (conditions, observedGeneration, facts).
- apiGroups: ["csi.hardened.dev"]
  resources: ["hardenedcsidrivers/status"]
  verbs: ["patch"]
# The CSIDriver ebs.csi.aws.com, by name only (server-side apply that creates is authorised as
# `create` of that name); its cache watches with fieldSelector metadata.name, so the watch is by name too.
- apiGroups: ["storage.k8s.io"]
  resources: ["csidrivers"]
  verbs: ["get", "create", "patch", "delete"]
  resourceNames:
    - ebs.csi.aws.com
- apiGroups: ["storage.k8s.io"]
  resources: ["csidrivers"]
  verbs: ["list", "watch"]
  resourceNames:
    - ebs.csi.aws.com
# StorageClasses and VolumeSnapshotClasses: their names come from each HardenedCsiDriver, so by kind.
- apiGroups: ["storage.k8s.io"]
  resources: ["storageclasses"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["snapshot.storage.k8s.io"]
  resources: ["volumesnapshotclasses"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["storage.k8s.io"]
  resources: ["volumeattributesclasses"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Read only, by name: verify the driver's ClusterRoles and bindings this chart installs
# (templates/driver-rbac.yaml), each watched by metadata.name (a change is reported at once). The
# operator writes no RBAC object, so its token grants nothing.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles"]
  verbs: ["list", "watch"]
  resourceNames:
    - ebs-external-attacher-role
    - ebs-csi-node-role
    - ebs-external-provisioner-role
    - ebs-external-resizer-role
    - ebs-external-snapshotter-role
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterrolebindings"]
  verbs: ["list", "watch"]
  resourceNames:
    - ebs-csi-attacher-binding
    - ebs-csi-node-getter-binding
    - ebs-csi-provisioner-binding
    - ebs-csi-resizer-binding
    - ebs-csi-snapshotter-binding
# Read only, by name: verify the snapshot-controller's ClusterRole and binding
# (templates/snapshot-controller-rbac.yaml, value snapshotController.rbac.create).
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles"]
  verbs: ["list", "watch"]
  resourceNames:
    - snapshot-controller-runner
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterrolebindings"]
  verbs: ["list", "watch"]
  resourceNames:
    - snapshot-controller-role
# Whether the snapshot API and the Prometheus Operator's ServiceMonitor are installed: their CRDs,
# by name (read only).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
  resourceNames:
    - volumesnapshotclasses.snapshot.storage.k8s.io
    - servicemonitors.monitoring.coreos.com
# spec.snapshots.controller: read the three snapshot CRDs (whose they are, their bundle) and apply
# the shipped ones where absent, server-side by name. No delete: that would delete every VolumeSnapshot.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "create", "patch"]
  resourceNames:
    - volumesnapshotclasses.snapshot.storage.k8s.io
    - volumesnapshotcontents.snapshot.storage.k8s.io
    - volumesnapshots.snapshot.storage.k8s.io
# spec.snapshots.controller: find another installation's snapshot-controller in any namespace by
# the leader-election Lease it holds, listed by name (read only; no Deployment is read cluster-wide).
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["list"]
  resourceNames:
    - snapshot-controller-leader
# Deletion guard (no driver removal under live volumes), the inventory's PV watch (orphans, leaks)
# and VolumeAttributesClasses still named by a volume.
- apiGroups: [""]
  resources: ["persistentvolumes"]
  verbs: ["list", "watch"]
# A VolumeAttributesClass is kept while a claim names it (read before deleting one).
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["list"]
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
# Events on condition transitions (a cluster-scoped object's events go to the default namespace).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/*
Everything namespaced the operator writes: in the driver namespace only (driverNamespace).
*/}}
{{- define "hco.driverNamespaceRules" -}}
# The driver's objects, each by name: server-side apply (create of that name, patch), the
# ownership check (get) and removal (delete). The caches list and watch by label (no name).
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "create", "patch", "delete"]
  resourceNames:
    - ebs-csi-controller-sa
    - ebs-csi-node-sa
    - snapshot-controller
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["list", "watch"]
# IRSA probe: a short-lived token for the driver controller's ServiceAccount only.
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
  resourceNames:
    - ebs-csi-controller-sa
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch", "delete"]
  resourceNames:
    - ebs-csi-controller
# The snapshot-controller (spec.snapshots.controller); get also tells whether another installation
# runs one in the driver namespace.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch", "delete"]
  resourceNames:
    - snapshot-controller
- apiGroups: ["apps"]
  resources: ["daemonsets"]
  verbs: ["get", "create", "patch", "delete"]
  resourceNames:
    - ebs-csi-node
- apiGroups: ["apps"]
  resources: ["deployments", "daemonsets"]
  verbs: ["list", "watch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch", "delete"]
  resourceNames:
    - ebs-csi-controller
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch", "delete"]
  resourceNames:
    - snapshot-controller
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch", "delete"]
  resourceNames:
    - ebs-csi-controller
    - ebs-csi-node
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch"]
# The driver's ServiceMonitors (spec.metrics.serviceMonitor), one per metrics Service.
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "create", "patch", "delete"]
  resourceNames:
    - ebs-csi-controller
    - ebs-csi-node
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["list", "watch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch", "delete"]
  resourceNames:
    - ebs-csi-driver
    - snapshot-controller
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["list", "watch"]
# PodsHealthy: the driver pods' container statuses (pull failures, crash loops), one
# label-filtered watch; read only.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Read only, by name: verify the driver's leases Role and binding this chart installs.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles"]
  verbs: ["list", "watch"]
  resourceNames:
    - ebs-csi-leases-role
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["rolebindings"]
  verbs: ["list", "watch"]
  resourceNames:
    - ebs-csi-leases-rolebinding
# Read only, by name: verify the snapshot-controller's leader-election Role and binding.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["list", "watch"]
  resourceNames:
    - snapshot-controller-leaderelection
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

{{/*
The driver namespace, fixed at install time: the operator's namespaced grants are there only and
it refuses a HardenedCsiDriver whose spec.namespace differs. A driver block must agree.
*/}}
{{- define "hco.driverNamespace" -}}
{{- $want := .Values.driverNamespace -}}
{{- if and .Values.driver.enabled .Values.driver.spec.namespace (ne .Values.driver.spec.namespace $want) -}}
{{- $why := "the operator is installed for one driver namespace; set both to the same value" -}}
{{- fail (printf "driver.spec.namespace is %q but driverNamespace is %q: %s" .Values.driver.spec.namespace $want $why) -}}
{{- end -}}
{{- .Values.driverNamespace -}}
{{- end -}}

{{/* Pull Secret names: from the driver block when it sets them. */}}

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

{{/*
spec.aws.caBundle: the operator trusts that PEM bundle for its own AWS calls and reads it with one
`get` of its ConfigMap in the driver namespace, limited by resourceNames to the ConfigMaps named
here (aws.caBundleConfigMaps, and the driver block's caBundle).
*/}}
{{- define "hco.caBundleRules" -}}
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
  resourceNames:
    {{- range (include "hco.caBundleNames" . | fromJsonArray) }}
    - {{ . }}
    {{- end }}
{{- end -}}

{{/* CA-bundle ConfigMap names: aws.caBundleConfigMaps, plus the driver block's when it sets one. */}}
{{- define "hco.caBundleNames" -}}
{{- $names := .Values.aws.caBundleConfigMaps | default list -}}
{{- if .Values.driver.enabled -}}
{{- with ((((.Values.driver.spec).aws).caBundle).name) -}}
{{- if not (has . $names) -}}
{{- $names = append $names . -}}
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

{{/* Labels of the driver's RBAC this chart installs (templates/driver-rbac.yaml). */}}
{{- define "hco.driverRbacLabels" -}}
{{ include "hco.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: driver-rbac
app.kubernetes.io/part-of: hardened-csi-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

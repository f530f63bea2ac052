#!/usr/bin/env bash
# `make demo`: the operator end to end on this machine, no cloud and no cluster needed.
#
# Starts the project's local Kubernetes API server (RBAC enforced) and a moto server (AWS
# EC2/EBS/STS) on free ports, installs the operator with `kubectl apply -k deploy/`, runs
# `hardened-csi-operator run` as its ServiceAccount against both, applies an example
# HardenedCsiDriver (default deploy/examples/irsa.yaml, or the file given as $1), waits for
# Ready=True and for the first AWS inventory (each bounded by DEMO_TIMEOUT seconds, default 120),
# prints the children and the status,
# checks that the API server refused the operator nothing, and stops everything it started on
# exit, success or not.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${HCO_BIN:-target/debug/hardened-csi-operator}
APISERVER=${LOCAL_APISERVER:-target/debug/local-apiserver}
MOTO=${MOTO_SERVER:-.venv/bin/moto_server}
PY=${DEMO_PYTHON:-.venv/bin/python}
CRD=crds/hardenedcsidrivers.csi.hardened.dev.yaml
# IRSA by default: the operator checks AWS as the driver's identity, and moto answers STS's
# AssumeRoleWithWebIdentity but not EKS Auth, which Pod Identity (minimal.yaml) needs.
EXAMPLE=${1:-deploy/examples/irsa.yaml}
TIMEOUT=${DEMO_TIMEOUT:-120}

for f in "$BIN" "$APISERVER" "$MOTO" "$PY" "$CRD" "$EXAMPLE"; do
  [[ -e $f ]] || { echo "demo: $f is missing (run 'make build venv crds', or 'make demo')" >&2; exit 1; }
done
command -v kubectl >/dev/null || { echo "demo: kubectl is required" >&2; exit 1; }

work=$(mktemp -d -t hco-demo.XXXXXX)
pids=()
names=()
cleanup() {
  local status=$?
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if ((status != 0)); then
    for log in "$work"/*.log; do
      [[ -s $log ]] || continue
      echo "---- last lines of $(basename "$log")" >&2
      tail -n 25 "$log" >&2
    done
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls a command until it succeeds or the deadline passes.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    for i in "${!pids[@]}"; do
      if ! kill -0 "${pids[i]}" 2>/dev/null; then
        echo "demo: ${names[i]} exited while waiting for $what (log: ${names[i]}.log below)" >&2
        return 1
      fi
    done
    if ((SECONDS >= deadline)); then
      echo "demo: timed out after ${seconds}s waiting for $what" >&2
      return 1
    fi
    sleep 0.5
  done
}

http_ok() {
  "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1"
}

api_port=$(free_port)
moto_port=$(free_port)
metrics_port=$(free_port)
export KUBECONFIG=$work/kubeconfig

echo "==> local API server on 127.0.0.1:$api_port (authentication and RBAC on, like a real cluster)"
"$APISERVER" --port "$api_port" --kubeconfig "$KUBECONFIG" --authorization-mode=RBAC \
  --enable-admission-plugins=OwnerReferencesPermissionEnforcement >"$work/apiserver.log" 2>&1 &
pids+=($!) names+=(apiserver)
wait_for "the local API server" 30 kubectl get --raw /version

echo "==> moto (AWS) on 127.0.0.1:$moto_port"
MOTO_EC2_LOAD_DEFAULT_AMIS=false "$MOTO" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!) names+=(moto)
wait_for "moto" 30 http_ok "http://127.0.0.1:$moto_port/moto-api/"

echo "==> kubectl apply --server-side -k deploy/ (the CRD, the operator's RBAC and Deployment, the driver's RBAC)"
kubectl apply --server-side -k deploy/ >/dev/null
wait_for "the CRD to be served" 30 kubectl get hardenedcsidrivers

# The operator runs here as its pod would: as its ServiceAccount (a token from TokenRequest, as the
# kubelet mounts one) with the installed Deployment's arguments, but a local metrics port, text
# logs and moto for AWS.
operator_sa=system:serviceaccount:hardened-csi-operator:hardened-csi-operator
operator_kc=$work/operator.kubeconfig
cp "$KUBECONFIG" "$operator_kc"
token=$(kubectl -n hardened-csi-operator create token hardened-csi-operator --duration=1h)
kubectl --kubeconfig "$operator_kc" config set-credentials "$(kubectl config view -o jsonpath='{.users[0].name}')" \
  --token="$token" >/dev/null
mapfile -t operator_args < <(kubectl -n hardened-csi-operator get deployment hardened-csi-operator -o json | "$PY" -c '
import json, sys
args = json.load(sys.stdin)["spec"]["template"]["spec"]["containers"][0]["args"]
print("\n".join(a for a in args if not a.startswith(("--metrics-addr", "--log-format"))))
')

echo "==> hardened-csi-operator ${operator_args[*]} (as $operator_sa)"
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
  POD_NAME=hardened-csi-operator-demo POD_NAMESPACE=hardened-csi-operator \
  "$BIN" "${operator_args[@]}" --kubeconfig "$operator_kc" --aws-endpoint-url "http://127.0.0.1:$moto_port" \
  --metrics-addr "127.0.0.1:$metrics_port" --log-format text >"$work/operator.log" 2>&1 &
pids+=($!) names+=(operator)
wait_for "the operator to be ready" 60 http_ok "http://127.0.0.1:$metrics_port/readyz"

# name, namespace and pull secrets of the example, read with the venv's PyYAML.
read -r name namespace secrets < <("$PY" -c '
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
spec = doc.get("spec") or {}
secrets = (spec.get("images") or {}).get("pullSecrets") or []
print(doc["metadata"]["name"], spec.get("namespace", "kube-system"), ",".join(secrets) or "-")
' "$EXAMPLE")

# What a user does before applying: the namespace exists and holds the registry pull secret(s).
# (Generated client-side and applied: `kubectl create` sends protobuf, which the local API server
# does not speak.) Two Nodes give the node plugin DaemonSet something to schedule on.
{
  kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace" --dry-run=client -o yaml
  for secret in ${secrets//,/ }; do
    [[ $secret == - ]] && continue
    echo ---
    kubectl -n "$namespace" create secret docker-registry "$secret" --dry-run=client -o yaml \
      --docker-server=dhi.io --docker-username=demo --docker-password=demo
  done
  for zone in a b; do
    printf -- '---\napiVersion: v1\nkind: Node\nmetadata:\n  name: demo-node-%s\n  labels:\n' "$zone"
    printf '    kubernetes.io/os: linux\n    topology.kubernetes.io/zone: us-east-1%s\n' "$zone"
  done
} | kubectl apply -f - >/dev/null

echo "==> kubectl apply -f $EXAMPLE"
kubectl apply -f "$EXAMPLE"

echo "==> waiting up to ${TIMEOUT}s for HardenedCsiDriver/$name Ready=True"
ready() {
  [[ $(kubectl get hardenedcsidriver "$name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}
if ! wait_for "Ready=True" "$TIMEOUT" ready; then
  kubectl get hardenedcsidriver "$name" -o yaml | sed -n '/^status:/,$p' >&2 || true
  exit 1
fi

# The AWS inventory is polled beside the watch: wait for its first answer (from moto) too.
echo "==> waiting up to ${TIMEOUT}s for the AWS inventory (AwsReachable=True)"
aws_answered() {
  [[ $(kubectl get hardenedcsidriver "$name" -o jsonpath='{.status.conditions[?(@.type=="AwsReachable")].status}') == True ]]
}
if ! wait_for "AwsReachable=True" "$TIMEOUT" aws_answered; then
  kubectl get hardenedcsidriver "$name" -o yaml | sed -n '/^status:/,$p' >&2 || true
  exit 1
fi

echo
echo "==> children in $namespace"
kubectl -n "$namespace" get deployments,daemonsets,serviceaccounts,roles,rolebindings,poddisruptionbudgets,networkpolicies,services
echo
echo "==> cluster-scoped children"
kubectl get csidrivers,storageclasses,clusterroles,clusterrolebindings
echo
echo "==> HardenedCsiDriver/$name"
kubectl get hardenedcsidriver "$name" -o wide
echo
kubectl get hardenedcsidriver "$name" -o yaml | sed -n '/^status:/,$p'
echo
# The API server's access log: the installation's RBAC refused the operator nothing.
kubectl get --raw "/local-apiserver/access-log?user=$operator_sa" | "$PY" -c '
import json, sys
report = json.load(sys.stdin)
denied = [d.get("description", d) for d in report["denied"]]
if denied or not report["allowed"]:
    sys.exit("demo: the operator was refused: %s" % (denied or "it made no request"))
print("==> %d kinds of request by %s, none refused" % (len(report["allowed"]), report["user"]))
'
echo "==> demo OK; stopping the operator, moto and the API server"

#!/usr/bin/env bash
# Every manifest remoractl generates (each profile, --set overrides, kube-inject of Istio's
# samples and of every workload kind) validates against the Kubernetes OpenAPI schemas, offline.
# Usage: validate_manifests.sh REMORACTL ISTIO-SAMPLES-DIR. Exit 77 (skip) without node_modules.
set -euo pipefail
remoractl=$1
samples=$2
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -d "$here/node_modules/kubernetes-models" ] || ! command -v node >/dev/null; then
    echo "skip: run scripts/setup.sh (npm ci in tests/k8s-schema) first"
    exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
validate() {  # NAME FILE
    if ! out=$(node "$here/validate.mjs" "$2" 2>&1); then
        echo "FAIL $1:"
        echo "$out"
        exit 1
    fi
    echo "ok   $1: $out"
}

for profile in default minimal demo; do
    "$remoractl" manifest generate --profile "$profile" --state-dir "$work/state" \
        -o "$work/$profile.yaml" 2>/dev/null
    validate "manifest generate --profile $profile" "$work/$profile.yaml"
done
echo '{"keys":[]}' > "$work/jwks.json"
"$remoractl" install --state-dir "$work/state" --cluster-jwks "$work/jwks.json" \
    --set control.replicas=3 --set injector.failurePolicy=Ignore \
    --set injector.reinvocationPolicy=IfNeeded --set injector.nativeSidecar=true \
    --set rootCertNamespaces=default,shop,bookinfo --set meshConfig.accessLogFile=/dev/stdout \
    --set meshConfig.defaultConfig.concurrency=4 --set hub=registry.example/remora --set tag=9.9 \
    >"$work/set.yaml" 2>/dev/null
validate "install --set ..." "$work/set.yaml"

# A manifest the validator must refuse: the check can fail.
sed 's/replicas: 3/replicas: three/' "$work/set.yaml" > "$work/bad.yaml"
if node "$here/validate.mjs" "$work/bad.yaml" >/dev/null 2>&1; then
    echo "FAIL: the validator accepted replicas: three"
    exit 1
fi
echo "ok   a broken Deployment is refused"

for f in hello.yaml bookinfo.yaml httpbin.yaml sleep.yaml curl.yaml; do
    "$remoractl" kube-inject -f "$samples/$f" -o "$work/$f"
    validate "kube-inject $f" "$work/$f"
    "$remoractl" kube-inject --native-sidecar -f - < "$samples/$f" > "$work/native-$f"
    validate "kube-inject --native-sidecar $f" "$work/native-$f"
done

cat > "$work/kinds.yaml" <<'YAML'
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: db
        image: db:1
        ports: [{name: tcp-db, containerPort: 5432}]
        readinessProbe: {tcpSocket: {port: tcp-db}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata:
      labels: {app: agent}
      annotations:
        proxy.istio.io/config: '{concurrency: 1, holdApplicationUntilProxyStarts: false}'
        sidecar.istio.io/proxyCPU: 10m
    spec:
      containers: [{name: agent, image: agent:1}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: once, image: once:1, command: [/bin/true]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: nightly, image: n:1}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec:
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}}
    spec:
      containers:
      - name: rs
        image: rs:1
        livenessProbe: {httpGet: {path: /healthz, port: 8080}}
---
apiVersion: v1
kind: Pod
metadata: {name: solo}
spec:
  containers: [{name: solo, image: solo:1}]
YAML
"$remoractl" kube-inject -f "$work/kinds.yaml" -o "$work/kinds-injected.yaml"
validate "kube-inject of every workload kind" "$work/kinds-injected.yaml"
test "$(grep -c 'name: remora-proxy' "$work/kinds-injected.yaml")" -eq 6
echo "ok   six workloads, six proxies"

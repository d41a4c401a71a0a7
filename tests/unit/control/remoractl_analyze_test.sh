#!/bin/sh
# remoractl analyze as a user runs it: exit 79 and istioctl's lines on broken input, exit 0 and the
# check mark on consistent input, exit 2 on a usage error. Args: REMORACTL SAMPLES_DIR.
set -u
remoractl=$1
samples=$2
fail() { echo "FAIL: $*"; exit 1; }

out=$("$remoractl" analyze "$samples/virtualservice_destinationrules.yaml")
[ $? -eq 79 ] || fail "broken input: want exit 79"
echo "$out" | grep -q '^Error \[IST0101\] (VirtualService default/reviews-bogussubset .*:26) Referenced host+subset in destinationrule not found: "reviews+bogus"$' \
    || fail "broken input: IST0101 line missing: $out"

out=$("$remoractl" analyze "$samples/bookinfo.yaml" "$samples/destination-rule-reviews.yaml" \
    "$samples/virtual-service-reviews-80-20.yaml")
[ $? -eq 0 ] || fail "consistent input: want exit 0: $out"
echo "$out" | grep -q '^✔ No validation issues found when analyzing ' || fail "no check mark: $out"

out=$("$remoractl" analyze "$samples/bookinfo-gateway.yaml" "$samples/bookinfo.yaml" --analyzers DestinationHostAnalyzer)
[ $? -eq 0 ] || fail "warnings only: want exit 0: $out"
echo "$out" | grep -q 'spec.gateways\[0\]: not supported by remora' || fail "no remora warning: $out"

"$remoractl" analyze >/dev/null 2>&1
[ $? -eq 2 ] || fail "no arguments: want exit 2"

# istioctl's flags.
dr="$samples/virtualservice_destinationrules.yaml"
out=$("$remoractl" analyze -o json "$dr")
[ $? -eq 79 ] || fail "json: want exit 79"
echo "$out" | head -1 | grep -qx '\[' || fail "json: not a list: $out"
echo "$out" | grep -q '"code": "IST0101",' || fail "json: no IST0101: $out"
echo "$out" | grep -q '"origin": "VirtualService default/reviews-bogussubset",' || fail "json: no origin: $out"
echo "$out" | python3 -c 'import json,sys; json.load(sys.stdin)' || fail "json: not JSON"
out=$("$remoractl" analyze --output yaml "$dr")
echo "$out" | grep -q '^- code: IST0101$' || fail "yaml: no IST0101: $out"
out=$("$remoractl" analyze --suppress 'IST0101=VirtualService *bogus*.default' "$dr")
[ $? -eq 79 ] || fail "suppress: the other errors still count"
echo "$out" | grep -q '^Error.*bogussubset' && fail "suppress: bogussubset still reported: $out"
out=$("$remoractl" analyze --analyzers destinationrule.SubsetSelectPodAnalyzer "$dr")
[ $? -eq 0 ] || fail "warnings only: want exit 0"
echo "$out" | grep -q '^Warning \[IST0174\]' || fail "warnings only: no IST0174: $out"
"$remoractl" analyze --analyzers destinationrule.SubsetSelectPodAnalyzer --failure-threshold warning "$dr" >/dev/null
[ $? -eq 79 ] || fail "--failure-threshold Warning: want exit 79"
out=$("$remoractl" analyze --analyzers destinationrule.SubsetSelectPodAnalyzer --output-threshold Error --no-remora-warnings "$dr")
echo "$out" | grep -q 'IST0174' && fail "--output-threshold Error: warning shown: $out"
out=$("$remoractl" analyze -n elsewhere "$dr")
[ $? -eq 0 ] || fail "--namespace elsewhere: want exit 0: $out"
"$remoractl" analyze -A -n default "$dr" >/dev/null 2>&1
[ $? -eq 2 ] || fail "-A with -n: want exit 2"
"$remoractl" analyze -o xml "$dr" >/dev/null 2>&1
[ $? -eq 2 ] || fail "-o xml: want exit 2"
out=$("$remoractl" analyze --list-analyzers)
echo "$out" | grep -q '^\* destinationrule.CaCertificateAnalyzer:$' || fail "--list-analyzers: $out"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# istioctl's default ingress gateway (files only): a Gateway selecting istio=ingressgateway finds
# its pod, and port 80 on its Service; port 8080 is not there (IST0162, a warning: exit 0).
printf 'apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ["*"]\n' > "$tmp/gw.yaml"
out=$("$remoractl" analyze --no-remora-warnings --analyzers gateway.IngressGatewayPortAnalyzer "$tmp/gw.yaml" 2>&1)
[ $? -eq 0 ] || fail "default ingress gateway: want exit 0: $out"
echo "$out" | grep -q '^✔ No validation issues found' || fail "default ingress gateway: $out"
sed -i 's/number: 80,/number: 8080,/' "$tmp/gw.yaml"
out=$("$remoractl" analyze --analyzers IngressGatewayPortAnalyzer "$tmp/gw.yaml" 2>&1)
[ $? -eq 0 ] || fail "IST0162: want exit 0: $out"
echo "$out" | grep -q '^Warning \[IST0162\] (Gateway default/gw .*gw.yaml:1) The gateway is listening on a target port (port 8080)' \
    || fail "IST0162 missing: $out"
# Namespaces and Pods: injection (IST0102 is about a Namespace, which -n does not hide) and the
# proxy's UID (IST0144).
printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: plain\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  namespace: shop\nspec:\n  securityContext: {runAsUser: 1337}\n  containers: [{name: app, image: app}]\n' > "$tmp/ns.yaml"
out=$("$remoractl" analyze -n elsewhere "$tmp/ns.yaml" 2>&1)
[ $? -eq 0 ] || fail "IST0102: want exit 0: $out"
echo "$out" | grep -q "^Info \[IST0102\] (Namespace plain .*ns.yaml:1) The namespace is not enabled for Istio injection. Run 'kubectl label namespace plain istio-injection=enabled'" \
    || fail "IST0102 missing: $out"
echo "$out" | grep -q 'IST0144' && fail "-n elsewhere: shop's Pod reported: $out"
out=$("$remoractl" analyze -o json --analyzers applicationUID.Analyzer "$tmp/ns.yaml" 2>&1)
echo "$out" | grep -q '"origin": "Pod shop/app",' || fail "IST0144 missing: $out"
out=$("$remoractl" analyze -o json --analyzers injection.Analyzer "$tmp/ns.yaml" 2>&1)
echo "$out" | grep -q '"origin": "Namespace plain",' || fail "IST0102 origin: $out"
out=$("$remoractl" analyze --list-analyzers)
for a in service.PortNameAnalyzer gateway.CertificateAnalyzer virtualservice.JWTClaimRouteAnalyzer applicationUID.Analyzer injection.Analyzer annotations.K8sAnalyzer serviceentry.ConflictingServiceEntryProtocolAnalyzer deployment.MultiServiceAnalyzer authn.BlockedCIDRsAnalyzer; do
    echo "$out" | grep -q "^\* $a:\$" || fail "--list-analyzers: no $a: $out"
done
# A Service with spec: {} and a headless one without ports are valid Kubernetes.
printf 'apiVersion: v1\nkind: Service\nmetadata:\n  name: a\nspec: {}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\nspec:\n  clusterIP: None\n' > "$tmp/svc.yaml"
out=$("$remoractl" analyze "$tmp/svc.yaml" 2>&1)
[ $? -eq 0 ] || fail "Service spec: {}: want exit 0: $out"
echo "remoractl analyze: ok"

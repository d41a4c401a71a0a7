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
echo "remoractl analyze: ok"

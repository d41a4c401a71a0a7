#!/usr/bin/env bash
# Remora quickstart: installs and builds everything, starts the control plane (the mesh CA) on
# loopback, mints a bootstrap token, obtains a workload certificate with it, and shows what it got.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
export BUILD_DIR
scripts/setup.sh

BIN="$PWD/$BUILD_DIR/control"
WORK=$(mktemp -d /tmp/remora-quickstart.XXXXXX)
CTL_PID=""
cleanup() {
    [ -n "$CTL_PID" ] && kill "$CTL_PID" 2>/dev/null && wait "$CTL_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
API_PORT=15012; MON_PORT=15014
port_busy $API_PORT && API_PORT=$(free_port)
port_busy $MON_PORT && MON_PORT=$(free_port)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Start remora-control (CA API on 127.0.0.1:$API_PORT, monitoring on 127.0.0.1:$MON_PORT)"
"$BIN/remora-control" --state-dir "$WORK/state" --listen "127.0.0.1:$API_PORT" \
    --monitoring "127.0.0.1:$MON_PORT" 2> "$WORK/control.log" &
CTL_PID=$!
for _ in $(seq 1 50); do
    curl -sf "http://127.0.0.1:$MON_PORT/healthz" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$MON_PORT/healthz" >/dev/null || { cat "$WORK/control.log"; exit 1; }
sed 's/^/   /' "$WORK/control.log"
echo "   state dir: $(ls "$WORK/state" | tr '\n' ' ')"

step "2. The mesh root: remoractl ca root"
"$BIN/remoractl" ca root --state-dir "$WORK/state" > "$WORK/root-cert.pem"
openssl x509 -in "$WORK/root-cert.pem" -noout -subject -enddate | sed 's/^/   /'

step "3. A bootstrap token for service account default/sleep: remoractl token create"
"$BIN/remoractl" token create --namespace default --service-account sleep --ttl 10m \
    --state-dir "$WORK/state" > "$WORK/token"
echo "   $(cut -c1-72 "$WORK/token")..."
echo "   claims: $(cut -d. -f2 "$WORK/token" | python3 -c 'import base64,sys; s=sys.stdin.read().strip(); print(base64.urlsafe_b64decode(s+"="*(-len(s)%4)).decode())')"

step "4. Ask the CA for a certificate: remoractl cert request"
"$BIN/remoractl" cert request --control "localhost:$API_PORT" --trust-bundle "$WORK/root-cert.pem" \
    --token-file "$WORK/token" --out "$WORK/certs" | sed 's/^/   /'

step "5. What we got (openssl)"
openssl x509 -in "$WORK/certs/cert-chain.pem" -noout -ext subjectAltName,basicConstraints,keyUsage,extendedKeyUsage \
    -dates | sed 's/^/   /'
echo "   openssl verify: $(openssl verify -CAfile "$WORK/certs/root-cert.pem" "$WORK/certs/cert-chain.pem" 2>&1)"
echo "   key.pem mode: $(stat -c %a "$WORK/certs/key.pem")"

step "6. Renew over mTLS with the current certificate (no token)"
"$BIN/remoractl" cert request --control "localhost:$API_PORT" --trust-bundle "$WORK/root-cert.pem" \
    --cert-dir "$WORK/certs" --out "$WORK/certs" --ttl 1h | sed 's/^/   /'

step "7. A forged token is refused"
printf '%s' "$(cut -d. -f1,2 "$WORK/token").AAAA" > "$WORK/forged"
"$BIN/remoractl" cert request --control "localhost:$API_PORT" --trust-bundle "$WORK/root-cert.pem" \
    --token-file "$WORK/forged" --out "$WORK/forged-out" 2>&1 | sed 's/^/   /' || true

step "8. The CA's metrics: curl http://127.0.0.1:$MON_PORT/metrics"
curl -s "http://127.0.0.1:$MON_PORT/metrics" | grep -v '^#' | sed 's/^/   /'

step "9. The CA's log"
tail -n 3 "$WORK/control.log" | sed 's/^/   /'
echo
echo "Quickstart done; everything it started is stopped and its files removed."

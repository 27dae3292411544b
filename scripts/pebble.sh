#!/usr/bin/env bash
# Pebble, Let's Encrypt's ACME test server, for the HTTPS tests (test/acme*.test.ts), built from
# the Go module proxy only.
#
# `install` builds two binaries of github.com/letsencrypt/pebble/v2 with `go install` into a
# cache outside the clone: `pebble` (the CA) and `pebble-challtestsrv`, used here only as a DNS
# server that answers every A query with 127.0.0.1 (and no AAAA). The DNS server is why several
# test domains work: the system resolver knows `localhost` only, and SNI needs more than one
# name. `start` runs both with Pebble's test settings, except that HTTP-01 is really validated
# (no PEBBLE_VA_ALWAYS_VALID): Pebble fetches http://<domain>:$VVM_PEBBLE_HTTP_PORT/.well-known/
# acme-challenge/<token> from 127.0.0.1, i.e. from vvm's plain port.
#
# Usage: bash scripts/pebble.sh install|start|stop|status|log
#   install  build the binaries into the cache (reused when present)
#   start    install if needed, start Pebble and its DNS server, return once both listen
#   stop     stop both and wait for them to exit
#   status   print whether Pebble runs (exit 0) or not (exit 1)
#   log      print the tail of both logs
#
# Environment (defaults in brackets):
#   VVM_PEBBLE_VERSION          module version [v2.10.1] (`go list -m -versions github.com/letsencrypt/pebble/v2`)
#   VVM_PEBBLE_CACHE            GOPATH, module and build cache, binaries [$HOME/.cache/vvm/go]
#   VVM_PEBBLE_PORT             ACME directory port: https://127.0.0.1:PORT/dir [14000]
#   VVM_PEBBLE_MANAGEMENT_PORT  management port: https://127.0.0.1:PORT/roots/0 is the root CA [15000]
#   VVM_PEBBLE_DNS_PORT         DNS server port (UDP and TCP) [8053]
#   VVM_PEBBLE_DNS_MANAGEMENT_PORT  the DNS server's own management port [8055]
#   VVM_PEBBLE_HTTP_PORT        port HTTP-01 challenges are fetched from (vvm's --port) [5002]
#   VVM_PEBBLE_VALIDITY_S       lifetime of issued certificates [7776000 = 90 days]
#   VVM_PEBBLE_DIR              run dir: config, logs, pids, the CA file of Pebble's own HTTPS
#                               (pebble.minica.pem) [${TMPDIR:-/tmp}/vvm-pebble-$VVM_PEBBLE_PORT]
#   VVM_PEBBLE_START_TIMEOUT_S  seconds `start` waits for the ports [30]
set -euo pipefail

readonly VERSION="${VVM_PEBBLE_VERSION:-v2.10.1}"
readonly CACHE_DIR="${VVM_PEBBLE_CACHE:-$HOME/.cache/vvm/go}"
readonly PORT="${VVM_PEBBLE_PORT:-14000}"
readonly MANAGEMENT_PORT="${VVM_PEBBLE_MANAGEMENT_PORT:-15000}"
readonly DNS_PORT="${VVM_PEBBLE_DNS_PORT:-8053}"
readonly DNS_MANAGEMENT_PORT="${VVM_PEBBLE_DNS_MANAGEMENT_PORT:-8055}"
readonly HTTP_PORT="${VVM_PEBBLE_HTTP_PORT:-5002}"
readonly VALIDITY_S="${VVM_PEBBLE_VALIDITY_S:-7776000}"
readonly RUN_DIR="${VVM_PEBBLE_DIR:-${TMPDIR:-/tmp}/vvm-pebble-$PORT}"
readonly START_TIMEOUT_S="${VVM_PEBBLE_START_TIMEOUT_S:-30}"
readonly MODULE="github.com/letsencrypt/pebble/v2"

readonly INSTALL_DIR="$CACHE_DIR/pebble-$VERSION"
readonly BIN_DIR="$INSTALL_DIR/bin"
readonly RUN_DIR_MARKER=".vvm-pebble-run-dir"

say() { echo "pebble.sh: $*" >&2; }
die() { say "$*"; exit 1; }

check_config() {
  local name value
  for name in PORT MANAGEMENT_PORT DNS_PORT DNS_MANAGEMENT_PORT HTTP_PORT VALIDITY_S START_TIMEOUT_S; do
    value="${!name}"
    [[ "$value" =~ ^[0-9]+$ ]] || die "VVM_PEBBLE_$name=$value: expected a number"
  done
  [[ "$VERSION" =~ ^v[0-9A-Za-z.-]+$ ]] || die "VVM_PEBBLE_VERSION=$VERSION: expected a version like v2.10.1"
}

installed() { [[ -x "$BIN_DIR/pebble" && -x "$BIN_DIR/pebble-challtestsrv" && -f "$INSTALL_DIR/certs/localhost/cert.pem" ]]; }

install() {
  if installed; then
    return 0
  fi
  command -v go >/dev/null || die "go is not installed (needed to build Pebble from the Go module proxy)"
  say "building pebble $VERSION into $INSTALL_DIR"
  mkdir -p "$BIN_DIR"
  # Everything Go downloads or builds stays in the cache; -modcacherw keeps it deletable.
  export GOPATH="$CACHE_DIR" GOMODCACHE="$CACHE_DIR/pkg/mod" GOCACHE="$CACHE_DIR/build" GOFLAGS="-modcacherw" GOBIN="$BIN_DIR"
  go install "$MODULE/cmd/pebble@$VERSION" "$MODULE/cmd/pebble-challtestsrv@$VERSION"
  # Pebble's own HTTPS (directory and management) uses the test certificate shipped in the
  # module, issued by its test "minica"; clients trust that CA file.
  local src
  src="$(go env GOMODCACHE)/$MODULE@$VERSION/test/certs"
  [[ -f "$src/localhost/cert.pem" ]] || die "no test certificates in $src"
  mkdir -p "$INSTALL_DIR/certs/localhost"
  cp "$src/pebble.minica.pem" "$INSTALL_DIR/certs/"
  cp "$src/localhost/cert.pem" "$src/localhost/key.pem" "$INSTALL_DIR/certs/localhost/"
  chmod u+w -R "$INSTALL_DIR/certs"
  say "installed: $("$BIN_DIR/pebble" -version)"
}

pid_of() { [[ -f "$RUN_DIR/$1.pid" ]] && cat "$RUN_DIR/$1.pid"; }
alive() { local pid; pid="$(pid_of "$1")" && [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_config() {
  cat >"$RUN_DIR/pebble-config.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$PORT",
    "managementListenAddress": "127.0.0.1:$MANAGEMENT_PORT",
    "certificate": "$INSTALL_DIR/certs/localhost/cert.pem",
    "privateKey": "$INSTALL_DIR/certs/localhost/key.pem",
    "httpPort": $HTTP_PORT,
    "tlsPort": 5001,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false,
    "domainBlocklist": ["blocked-domain.example"],
    "retryAfter": { "authz": 1, "order": 1 },
    "keyAlgorithm": "ecdsa",
    "profiles": { "default": { "description": "vvm tests", "validityPeriod": $VALIDITY_S } }
  }
}
EOF
}

start() {
  install
  if alive pebble; then
    say "already running (pid $(pid_of pebble)); stop it first"
    return 1
  fi
  mkdir -p "$RUN_DIR"
  touch "$RUN_DIR/$RUN_DIR_MARKER"
  cp "$INSTALL_DIR/certs/pebble.minica.pem" "$RUN_DIR/pebble.minica.pem"
  write_config
  # Only the DNS server of challtestsrv: its challenge servers are disabled (vvm answers them).
  setsid "$BIN_DIR/pebble-challtestsrv" -http01 "" -https01 "" -tlsalpn01 "" -doh "" \
    -dnsserver "127.0.0.1:$DNS_PORT" -management "127.0.0.1:$DNS_MANAGEMENT_PORT" \
    -defaultIPv4 127.0.0.1 -defaultIPv6 "" >"$RUN_DIR/dns.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/dns.pid"
  # Test settings: no random nonce rejection, no validation sleep, and no reuse of earlier
  # authorizations, so that every order (renewals too) validates against vvm's plain port.
  PEBBLE_WFE_NONCEREJECT=0 PEBBLE_VA_NOSLEEP=1 PEBBLE_AUTHZREUSE=0 \
    setsid "$BIN_DIR/pebble" -config "$RUN_DIR/pebble-config.json" -dnsserver "127.0.0.1:$DNS_PORT" \
    >"$RUN_DIR/pebble.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/pebble.pid"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until port_open "$PORT" && port_open "$MANAGEMENT_PORT" && port_open "$DNS_MANAGEMENT_PORT"; do
    if ! alive pebble || ! alive dns; then
      log_tail
      stop
      die "pebble exited during start"
    fi
    if ((SECONDS >= deadline)); then
      log_tail
      stop
      die "pebble did not listen within $START_TIMEOUT_S s"
    fi
    sleep 0.1
  done
  say "serving https://127.0.0.1:$PORT/dir (validates HTTP-01 on port $HTTP_PORT; run dir $RUN_DIR)"
}

stop_one() {
  local name="$1" pid
  pid="$(pid_of "$name")" || return 0
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN_DIR/$name.pid"
}

stop() {
  [[ -d "$RUN_DIR" ]] || return 0
  [[ -f "$RUN_DIR/$RUN_DIR_MARKER" ]] || die "$RUN_DIR is not a pebble run dir (no $RUN_DIR_MARKER)"
  stop_one pebble
  stop_one dns
}

log_tail() {
  local f
  for f in pebble.log dns.log; do
    [[ -f "$RUN_DIR/$f" ]] && { echo "--- $RUN_DIR/$f"; tail -n 40 "$RUN_DIR/$f"; }
  done >&2
  return 0
}

check_config
case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status)
    if alive pebble; then echo "running (pid $(pid_of pebble))"; else echo "not running"; exit 1; fi
    ;;
  log) log_tail ;;
  *) die "usage: bash scripts/pebble.sh install|start|stop|status|log" ;;
esac

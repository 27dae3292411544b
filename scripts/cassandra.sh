#!/usr/bin/env bash
# A real single-node Apache Cassandra 5.0 for tests and CI, from Maven Central only.
#
# Maven Central has no binary tarball of Cassandra 5 (org.apache.cassandra:apache-cassandra
# stops at 4.0-alpha2), so `install` resolves org.apache.cassandra:cassandra-all and its
# runtime dependencies with Maven (scripts/cassandra/pom.xml) into a cache outside the clone,
# and `start` runs org.apache.cassandra.service.CassandraDaemon with the files in
# scripts/cassandra/ (cassandra.yaml, jvm.options, logback.xml).
#
# Usage: bash scripts/cassandra.sh install|start|stop|status|clean|log
#   install  resolve the jars into the cache (reused when present)
#   start    install if needed, start on 127.0.0.1, return once CQL is served
#   stop     stop the server started from the run dir and wait for it to exit
#   status   print whether it runs (exit 0) or not (exit 1)
#   clean    stop, then delete the run dir (data and logs)
#   log      print the tail of the server log
#
# Environment (defaults in brackets):
#   VVM_CASSANDRA_VERSION       cassandra-all version [5.0.9]
#   VVM_CASSANDRA_CACHE         jar cache [$HOME/.cache/vvm/cassandra]
#   VVM_CASSANDRA_PORT          CQL native port [9042]
#   VVM_CASSANDRA_STORAGE_PORT  inter-node port, bound on 127.0.0.1 only [7000]
#   VVM_CASSANDRA_DIR           run dir: data/, logs/, cassandra.pid
#                               [${TMPDIR:-/tmp}/vvm-cassandra-$VVM_CASSANDRA_PORT]
#   VVM_CASSANDRA_HEAP          -Xmx; -Xms is half of it [1g]
#   VVM_CASSANDRA_START_TIMEOUT_S  seconds `start` waits for CQL [180]
set -euo pipefail

readonly SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly CONF_DIR="$SCRIPT_DIR/cassandra"
readonly VERSION="${VVM_CASSANDRA_VERSION:-5.0.9}"
readonly CACHE_DIR="${VVM_CASSANDRA_CACHE:-$HOME/.cache/vvm/cassandra}"
readonly PORT="${VVM_CASSANDRA_PORT:-9042}"
readonly STORAGE_PORT="${VVM_CASSANDRA_STORAGE_PORT:-7000}"
readonly RUN_DIR="${VVM_CASSANDRA_DIR:-${TMPDIR:-/tmp}/vvm-cassandra-$PORT}"
readonly HEAP="${VVM_CASSANDRA_HEAP:-1g}"
readonly START_TIMEOUT_S="${VVM_CASSANDRA_START_TIMEOUT_S:-180}"
# Pinned so that a fresh clone resolves the same plugin (3.8.1 runs on Maven >= 3.6.3).
readonly DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
# Logged by Cassandra once the native transport is bound: from then on CQL is served.
readonly READY_LINE="Starting listening for CQL clients"

readonly INSTALL_DIR="$CACHE_DIR/$VERSION"
readonly CLASSPATH_FILE="$INSTALL_DIR/classpath.txt"
readonly PID_FILE="$RUN_DIR/cassandra.pid"
readonly LOG_DIR="$RUN_DIR/logs"
readonly RUN_DIR_MARKER=".vvm-cassandra-run-dir"

say() { echo "cassandra.sh: $*" >&2; }
die() { say "$*"; exit 1; }

check_config() {
  [[ "$PORT" =~ ^[0-9]+$ ]] || die "VVM_CASSANDRA_PORT=$PORT: expected a port number"
  [[ "$STORAGE_PORT" =~ ^[0-9]+$ ]] || die "VVM_CASSANDRA_STORAGE_PORT=$STORAGE_PORT: expected a port number"
  [[ "$HEAP" =~ ^[0-9]+[mg]$ ]] || die "VVM_CASSANDRA_HEAP=$HEAP: expected e.g. 768m or 1g"
  [[ "$START_TIMEOUT_S" =~ ^[0-9]+$ ]] || die "VVM_CASSANDRA_START_TIMEOUT_S=$START_TIMEOUT_S: expected seconds"
  [[ "$VERSION" =~ ^[0-9A-Za-z.-]+$ ]] || die "VVM_CASSANDRA_VERSION=$VERSION: expected a version like 5.0.9"
}

installed() { [[ -f "$INSTALL_DIR/.complete" && -s "$CLASSPATH_FILE" ]]; }

cmd_install() {
  if installed; then
    say "cassandra-all $VERSION already installed in $INSTALL_DIR"
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven)"
  command -v java >/dev/null || die "java not found: install a JDK 17 (apt-get install openjdk-17-jdk-headless)"
  say "resolving org.apache.cassandra:cassandra-all:$VERSION and its dependencies into $CACHE_DIR"
  mkdir -p "$INSTALL_DIR"
  local tmp="$CLASSPATH_FILE.tmp.$$"
  # The Maven repository lives in the cache too, so the jars on the class path stay put and
  # a developer's ~/.m2 is neither needed nor touched.
  if ! mvn -B -q --no-transfer-progress \
      -f "$CONF_DIR/pom.xml" \
      -Dmaven.repo.local="$CACHE_DIR/m2" \
      -Dcassandra.version="$VERSION" \
      "$DEPENDENCY_PLUGIN:build-classpath" \
      -Dmdep.includeScope=runtime \
      -Dmdep.outputFile="$tmp" >"$INSTALL_DIR/mvn.log" 2>&1; then
    tail -n 40 "$INSTALL_DIR/mvn.log" >&2
    rm -f "$tmp"
    die "Maven could not resolve cassandra-all $VERSION (full log: $INSTALL_DIR/mvn.log)"
  fi
  tr ':' '\n' <"$tmp" | grep -q "/cassandra-all-$VERSION.jar$" \
    || die "the resolved class path has no cassandra-all-$VERSION.jar (see $tmp)"
  mv "$tmp" "$CLASSPATH_FILE"
  touch "$INSTALL_DIR/.complete"
  say "installed cassandra-all $VERSION ($(du -sh "$CACHE_DIR/m2" | cut -f1) in $CACHE_DIR/m2)"
}

# The pid from the pid file when that process is our CassandraDaemon, else nothing.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a reused pid: the process must be a CassandraDaemon of this run dir.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "CassandraDaemon" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-Dcassandra.storagedir=$RUN_DIR/data" || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

print_log_tail() {
  say "last lines of $LOG_DIR/system.log:"
  tail -n 40 "$LOG_DIR/system.log" >&2 2>/dev/null || true
  if [[ -s "$LOG_DIR/stdout.log" ]]; then
    say "last lines of $LOG_DIR/stdout.log:"
    tail -n 20 "$LOG_DIR/stdout.log" >&2
  fi
}

cmd_start() {
  local pid
  if pid="$(running_pid)"; then
    say "already running (pid $pid, 127.0.0.1:$PORT, dir $RUN_DIR)"
    return 0
  fi
  cmd_install
  port_open "$PORT" && die "127.0.0.1:$PORT is in use by another process: set VVM_CASSANDRA_PORT"
  port_open "$STORAGE_PORT" && die "127.0.0.1:$STORAGE_PORT is in use by another process: set VVM_CASSANDRA_STORAGE_PORT"

  local classpath jamm_jar
  classpath="$(cat "$CLASSPATH_FILE")"
  jamm_jar="$(tr ':' '\n' <"$CLASSPATH_FILE" | grep '/jamm-[^/]*\.jar$' | head -n 1)"
  [[ -n "$jamm_jar" ]] || die "jamm jar missing from $CLASSPATH_FILE: run 'rm -rf $INSTALL_DIR' and install again"
  local -a jvm_opts
  mapfile -t jvm_opts < <(grep -E '^\s*-' "$CONF_DIR/jvm.options" | sed -e 's/^\s*//' -e 's/\s*$//')

  mkdir -p "$RUN_DIR/data" "$LOG_DIR"
  touch "$RUN_DIR/$RUN_DIR_MARKER"
  # A fresh log per start, so the readiness wait sees only this start's lines.
  : >"$LOG_DIR/system.log"
  local started_at=$SECONDS
  # setsid: the server outlives the shell that started it (CI steps, test runners).
  setsid java \
    "-Xms$(half_of "$HEAP")" "-Xmx$HEAP" \
    "${jvm_opts[@]}" \
    "-javaagent:$jamm_jar" \
    "-Dcassandra.config=file://$CONF_DIR/cassandra.yaml" \
    "-Dlogback.configurationFile=file://$CONF_DIR/logback.xml" \
    "-Dcassandra.storagedir=$RUN_DIR/data" \
    "-Dcassandra.logdir=$LOG_DIR" \
    "-Dcassandra.native_transport_port=$PORT" \
    "-Dcassandra.storage_port=$STORAGE_PORT" \
    "-Dcassandra-foreground=yes" \
    -cp "$classpath" \
    org.apache.cassandra.service.CassandraDaemon \
    </dev/null >"$LOG_DIR/stdout.log" 2>&1 &
  pid=$!
  echo "$pid" >"$PID_FILE"

  while true; do
    if ! kill -0 "$pid" 2>/dev/null; then
      print_log_tail
      rm -f "$PID_FILE"
      die "Cassandra exited during start"
    fi
    if grep -qF "$READY_LINE" "$LOG_DIR/system.log" 2>/dev/null && port_open "$PORT"; then
      break
    fi
    if (( SECONDS - started_at >= START_TIMEOUT_S )); then
      print_log_tail
      stop_pid "$pid"
      die "Cassandra did not serve CQL within ${START_TIMEOUT_S}s"
    fi
    sleep 0.25
  done
  say "started in $((SECONDS - started_at))s: pid $pid, CQL on 127.0.0.1:$PORT, dir $RUN_DIR"
}

half_of() {
  local n="${1%[mg]}" unit="${1: -1}"
  if [[ "$unit" == g ]]; then n=$((n * 1024)); fi
  echo "$((n / 2))m"
}

# TERM lets Cassandra flush and close the commitlog; KILL only when it hangs.
stop_pid() {
  local pid="$1" waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do
    if (( waited >= 120 )); then   # 30 s in quarter seconds
      say "pid $pid still running 30s after TERM: sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.25
    waited=$((waited + 1))
  done
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    say "not running (dir $RUN_DIR)"
    return 0
  fi
  stop_pid "$pid"
  rm -f "$PID_FILE"
  say "stopped pid $pid"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    if port_open "$PORT"; then
      echo "running: pid $pid, CQL on 127.0.0.1:$PORT, dir $RUN_DIR"
    else
      echo "starting: pid $pid, CQL port $PORT not open yet, dir $RUN_DIR"
    fi
    return 0
  fi
  echo "not running (dir $RUN_DIR)"
  return 1
}

cmd_clean() {
  cmd_stop
  [[ -d "$RUN_DIR" ]] || return 0
  # Only a directory that `start` made: VVM_CASSANDRA_DIR may point anywhere.
  [[ -f "$RUN_DIR/$RUN_DIR_MARKER" ]] || die "$RUN_DIR was not made by this script (no $RUN_DIR_MARKER): not removing it"
  rm -rf "$RUN_DIR"
  say "removed $RUN_DIR"
}

cmd_log() { tail -n "${1:-60}" "$LOG_DIR/system.log"; }

check_config
case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  clean) cmd_clean ;;
  log) shift; cmd_log "$@" ;;
  *) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac

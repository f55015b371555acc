#!/usr/bin/env bash
# hack/kafka.sh - a real single-node Apache Kafka (KRaft) broker for local development and CI.
#
# There is no Kafka tarball here: the broker's jars come from Maven Central (org.apache.kafka:kafka_2.13
# plus its runtime dependencies and an SLF4J logging binding: log4j2 for 4.x, reload4j for 3.x),
# fetched with `mvn dependency:copy-dependencies` into a cache OUTSIDE the clone:
#     ${MILLRACE_CACHE:-~/.cache/millrace}/kafka/<version>/libs
# and run as `java -cp 'libs/*' kafka.Kafka server.properties`.
#
# Usage:
#   hack/kafka.sh install   fetch the jars (idempotent; a no-op when already cached); prints the libs dir
#   hack/kafka.sh start     install if needed, format a fresh KRaft storage dir in a temp dir, start a
#                           combined broker+controller on 127.0.0.1, wait until it serves requests and
#                           print the bootstrap address (last stdout line), e.g.
#                             export KAFKA_BOOTSTRAP="$(hack/kafka.sh start)"
#                           If a broker started by this script is already running on the port, just
#                           prints its address.
#   hack/kafka.sh stop      stop the broker on KAFKA_PORT and delete its temp dir
#   hack/kafka.sh status    print the state file of the broker on KAFKA_PORT (exit 1 when not running)
#
# The broker is configured for single-node use: transactions work (transaction state log RF=1,
# min.isr=1), offsets topic RF=1, group.initial.rebalance.delay.ms=0, and both the classic and the
# KIP-848 ("consumer") group protocols are enabled.
#
# Environment:
#   MILLRACE_CACHE          cache root (default ~/.cache/millrace)
#   KAFKA_VERSION           Kafka version from Maven Central (default below; 4.x recommended)
#   KAFKA_HOST              address the broker binds and advertises, default 127.0.0.1 (hack/cluster.sh
#                           uses the node bridge address, so that pods reach it)
#   KAFKA_PORT              client (PLAINTEXT) port, default 19092
#   KAFKA_CONTROLLER_PORT   KRaft controller port, default KAFKA_PORT+1
#   KAFKA_HEAP_OPTS         JVM heap flags (default -Xms256m -Xmx1g)
#   KAFKA_START_TIMEOUT     seconds to wait for the broker (default 120)
#   KAFKA_SASL_PORT         also a SASL_PLAINTEXT SCRAM-SHA-512 listener on this port, with the
#                           StandardAuthorizer (ANONYMOUS on PLAINTEXT is a super user)
#   KAFKA_EXTRA_PROPS       extra server.properties lines (newline separated), appended last
#   KAFKA_KEEP_DATA=1       keep the temp dir (logs + data) on `stop` or a failed start instead of deleting it
# Progress messages go to stderr. The state file is ${CACHE}/kafka/run/<port>.env (PID, DIR, LOG, ...).
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.3.1}"
SCALA_VERSION="2.13"
LOG4J2_VERSION="2.24.3"    # Kafka 4.x
RELOAD4J_VERSION="1.2.25"  # Kafka 3.x
SLF4J_VERSION="1.7.36"     # Kafka 3.x (slf4j-reload4j binding)
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

CACHE="${MILLRACE_CACHE:-${HOME}/.cache/millrace}"
HOME_DIR="${CACHE}/kafka/${KAFKA_VERSION}"
LIBS="${HOME_DIR}/libs"
STAMP="${HOME_DIR}/.complete"
RUN_DIR="${CACHE}/kafka/run"
PORT="${KAFKA_PORT:-19092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
STATE="${RUN_DIR}/${PORT}.env"
HOST="${KAFKA_HOST:-127.0.0.1}"

log() { printf '[kafka] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_kafka4() { ((${KAFKA_VERSION%%.*} >= 4)); }

# dep GROUP ARTIFACT VERSION [GROUP ARTIFACT VERSION ...]: pom <dependency> elements.
dep() {
  while (($# >= 3)); do
    printf '    <dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version></dependency>\n' \
      "$1" "$2" "$3"
    shift 3
  done
}

# Deletes a temp dir made by `start` (unless KAFKA_KEEP_DATA=1); refuses anything else.
cleanup_dir() {
  local dir="$1"
  [[ -n "${dir}" && -d "${dir}" ]] || return 0
  if [[ "${KAFKA_KEEP_DATA:-0}" != "1" && "$(basename "${dir}")" == millrace-kafka-* ]]; then
    rm -rf "${dir}"
  else
    log "kept ${dir}"
  fi
}

port_open() { (exec 3<>"/dev/tcp/${HOST}/$1") 2>/dev/null; }

install() {
  if [[ -f "${STAMP}" ]] && compgen -G "${LIBS}/kafka_${SCALA_VERSION}-${KAFKA_VERSION}.jar" >/dev/null; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn is not on PATH"
  command -v java >/dev/null 2>&1 || die "java is not on PATH"
  mkdir -p "${HOME_DIR}"
  exec 8>"${HOME_DIR}/.lock"
  flock 8
  if [[ -f "${STAMP}" ]]; then exec 8>&-; return 0; fi

  local t0 pom tmp logging_deps
  t0=$(date +%s)
  pom="${HOME_DIR}/pom.xml"
  if is_kafka4; then
    # 4.x logs through SLF4J 1.7 and its Log4jController talks to log4j2 (log4j-core) directly.
    logging_deps=$(dep org.apache.logging.log4j log4j-core "${LOG4J2_VERSION}" \
      org.apache.logging.log4j log4j-slf4j-impl "${LOG4J2_VERSION}")
  else
    # 3.x ships reload4j (log4j 1.2 API) with the slf4j-reload4j binding.
    logging_deps=$(dep ch.qos.reload4j reload4j "${RELOAD4J_VERSION}" \
      org.slf4j slf4j-reload4j "${SLF4J_VERSION}")
  fi
  cat >"${pom}" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by hack/kafka.sh: the runtime classpath of an Apache Kafka broker. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.millrace.local</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>${KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_${SCALA_VERSION}</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
${logging_deps}
  </dependencies>
</project>
EOF
  tmp="${HOME_DIR}/libs.tmp"
  rm -rf "${tmp}"
  log "fetching kafka_${SCALA_VERSION} ${KAFKA_VERSION} and its runtime dependencies from Maven Central"
  if ! mvn -B -Dstyle.color=never -f "${pom}" "${DEP_PLUGIN}:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="${tmp}" >"${HOME_DIR}/mvn.log" 2>&1; then
    tail -n 40 "${HOME_DIR}/mvn.log" >&2
    die "mvn dependency:copy-dependencies failed (full log: ${HOME_DIR}/mvn.log)"
  fi
  [[ -f "${tmp}/kafka_${SCALA_VERSION}-${KAFKA_VERSION}.jar" ]] || die "kafka jar missing after mvn"
  rm -rf "${LIBS}"
  mv "${tmp}" "${LIBS}"
  date -u +%Y-%m-%dT%H:%M:%SZ >"${STAMP}"
  exec 8>&-
  log "installed $(find "${LIBS}" -name '*.jar' | wc -l) jars into ${LIBS} in $(($(date +%s) - t0))s"
}

# Prints nothing and returns 1 unless the state file describes a live broker started by this script.
running() {
  [[ -f "${STATE}" ]] || return 1
  local pid dir cmd
  pid=$(sed -n 's/^PID=//p' "${STATE}")
  dir=$(sed -n 's/^DIR=//p' "${STATE}")
  [[ -n "${pid}" && -n "${dir}" ]] || return 1
  # Guard against pid reuse: the process must be our java with our config. (A zombie has an empty
  # cmdline, so an exited-but-unreaped broker counts as not running.)
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/${pid}/cmdline") || return 1
  [[ "${cmd}" == *"${dir}/server.properties"* ]]
}

start() {
  if running; then
    log "already running (state: ${STATE})"
    printf '%s:%s\n' "${HOST}" "${PORT}"
    return 0
  fi
  if [[ -f "${STATE}" ]]; then
    log "removing stale state of a broker that is gone (${STATE})"
    cleanup_dir "$(sed -n 's/^DIR=//p' "${STATE}")"
    rm -f "${STATE}"
  fi
  install
  port_open "${PORT}" && die "port ${PORT} is already in use (set KAFKA_PORT)"
  port_open "${CONTROLLER_PORT}" && die "controller port ${CONTROLLER_PORT} is already in use (set KAFKA_CONTROLLER_PORT)"

  local t0 dir cid
  t0=$(date +%s)
  mkdir -p "${RUN_DIR}"
  dir=$(mktemp -d "${TMPDIR:-/tmp}/millrace-kafka-${PORT}.XXXXXX")
  mkdir -p "${dir}/data"

  cat >"${dir}/server.properties" <<EOF
# Generated by hack/kafka.sh: single-node KRaft broker+controller on loopback.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@${HOST}:${CONTROLLER_PORT}
listeners=PLAINTEXT://${HOST}:${PORT},CONTROLLER://${HOST}:${CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://${HOST}:${PORT}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=${dir}/data
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
# Single broker: internal topics must not ask for more replicas than exist.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
log.segment.bytes=16777216
log.retention.check.interval.ms=30000
EOF
  if is_kafka4; then
    # 4.x: the KIP-848 "consumer" group protocol (and share/streams groups) is on by default; setting
    # group.coordinator.rebalance.protocols is deprecated there and would disable streams groups.
    cat >>"${dir}/server.properties" <<EOF
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=3
EOF
  else
    # 3.x: KIP-848 is early access and must be switched on explicitly (classic stays the default).
    printf '# Classic and KIP-848 consumer group protocols.\ngroup.coordinator.rebalance.protocols=classic,consumer\n' \
      >>"${dir}/server.properties"
  fi
  if [[ -n "${KAFKA_SASL_PORT:-}" ]]; then
    # A SCRAM-SHA-512 listener next to PLAINTEXT, with Kafka's own authorizer: PLAINTEXT clients
    # are ANONYMOUS, a super user (operators, KEDA, tests); SCRAM users get only what ACLs allow.
    cat >>"${dir}/server.properties" <<EOF
# KAFKA_SASL_PORT
listeners=PLAINTEXT://${HOST}:${PORT},CONTROLLER://${HOST}:${CONTROLLER_PORT},SASL://${HOST}:${KAFKA_SASL_PORT}
advertised.listeners=PLAINTEXT://${HOST}:${PORT},SASL://${HOST}:${KAFKA_SASL_PORT}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false
EOF
  fi
  if [[ -n "${KAFKA_EXTRA_PROPS:-}" ]]; then
    printf '# KAFKA_EXTRA_PROPS\n%s\n' "${KAFKA_EXTRA_PROPS}" >>"${dir}/server.properties"
  fi

  if is_kafka4; then
    cat >"${dir}/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
  else
    cat >"${dir}/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
EOF
  fi

  local -a common broker
  common=(-Djava.awt.headless=true
    "-Dlog4j2.configurationFile=${dir}/log4j2.properties" "-Dlog4j.configuration=file:${dir}/log4j.properties"
    "-Dkafka.logs.dir=${dir}" -cp "${LIBS}/*")
  # shellcheck disable=SC2206 # word splitting of the heap flags is intended
  broker=(${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 "${common[@]}")

  # A KRaft cluster id is a base64url-encoded random 16-byte UUID; like Kafka's Uuid.randomUuid(),
  # avoid ids starting with '-' (the argument parser would read them as an option).
  cid="-"
  while [[ "${cid}" == -* ]]; do
    cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
  done
  log "formatting storage in ${dir} (cluster id ${cid})"
  # The formatter is a short-lived JVM: C1 only and serial GC start faster.
  if ! java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "${common[@]}" \
    kafka.tools.StorageTool format -t "${cid}" -c "${dir}/server.properties" >"${dir}/format.log" 2>&1; then
    cat "${dir}/format.log" >&2
    cleanup_dir "${dir}"
    die "storage format failed"
  fi

  log "starting Kafka ${KAFKA_VERSION} on ${HOST}:${PORT} (controller ${CONTROLLER_PORT})"
  nohup java "${broker[@]}" kafka.Kafka "${dir}/server.properties" >"${dir}/kafka.log" 2>&1 </dev/null &
  local pid=$!
  {
    printf 'PID=%s\n' "${pid}"
    printf 'DIR=%s\n' "${dir}"
    printf 'LOG=%s\n' "${dir}/kafka.log"
    printf 'VERSION=%s\n' "${KAFKA_VERSION}"
    printf 'BOOTSTRAP=%s:%s\n' "${HOST}" "${PORT}"
    printf 'CONTROLLER=%s:%s\n' "${HOST}" "${CONTROLLER_PORT}"
  } >"${STATE}"

  local deadline=$((t0 + ${KAFKA_START_TIMEOUT:-120}))
  until grep -q 'Kafka Server started' "${dir}/kafka.log" 2>/dev/null && port_open "${PORT}"; do
    if ! kill -0 "${pid}" 2>/dev/null; then
      tail -n 40 "${dir}/kafka.log" >&2 || true
      rm -f "${STATE}"
      cleanup_dir "${dir}"
      die "broker exited during startup (last log lines above; KAFKA_KEEP_DATA=1 keeps ${dir})"
    fi
    if (($(date +%s) >= deadline)); then
      tail -n 40 "${dir}/kafka.log" >&2 || true
      stop >/dev/null 2>&1 || true
      die "broker did not become ready within ${KAFKA_START_TIMEOUT:-120}s"
    fi
    sleep 0.2
  done
  log "ready in $(($(date +%s) - t0))s (pid ${pid}, log ${dir}/kafka.log, state ${STATE})"
  printf '%s:%s\n' "${HOST}" "${PORT}"
}

stop() {
  if [[ ! -f "${STATE}" ]]; then
    log "no broker recorded for port ${PORT}"
    return 0
  fi
  local pid dir
  pid=$(sed -n 's/^PID=//p' "${STATE}")
  dir=$(sed -n 's/^DIR=//p' "${STATE}")
  if running; then
    log "stopping pid ${pid}"
    kill -TERM "${pid}" 2>/dev/null || true
    local i
    for ((i = 0; i < 150; i++)); do
      running || break
      sleep 0.2
    done
    if running; then
      log "pid ${pid} did not exit after 30s; killing"
      kill -KILL "${pid}" 2>/dev/null || true
    fi
  fi
  cleanup_dir "${dir}"
  rm -f "${STATE}"
  log "stopped"
}

status() {
  if running; then
    cat "${STATE}"
  else
    log "not running on port ${PORT}"
    return 1
  fi
}

case "${1:-}" in
  install) install; printf '%s\n' "${LIBS}" ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
    exit 2
    ;;
esac

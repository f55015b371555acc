#!/usr/bin/env bash
# hack/peer-bench.sh - the peer benchmark: the same jobs as Kafka Streams applications and as
# Millrace Pipelines run as deployed, one after another against one real broker (see
# docs/benchmarks.md, "Against Kafka Streams").
#
# Builds, into ${MILLRACE_CACHE:-~/.cache/millrace}/peer-bench (nothing in the clone):
#   - the Kafka Streams application hack/peer-bench (Java, Maven; Kafka Streams at the broker's
#     version, KAFKA_VERSION of hack/kafka.sh), rebuilt when its sources change;
#   - millrace-io, millrace-state, identity, wordcount-split, wordcount-sum and millrace-bench.
# Then runs `millrace-bench peer` with the arguments given, e.g.
#   hack/peer-bench.sh                       # the full run: 1,000,000 records, ~15-30 min on 2 busy cores
#   hack/peer-bench.sh --smoke               # 4,000 records and lines: checks the outputs only
#   hack/peer-bench.sh --jobs wordcount --guarantees eos
# BASELINE=<commit> also builds Millrace at that commit (git archive, into the cache) and runs it
# as the contender millrace-baseline right before millrace: a before/after in the same run.
# The broker: MILLRACE_KAFKA_BOOTSTRAP if set (it must run Kafka KAFKA_VERSION), else one started
# with hack/kafka.sh on KAFKA_PORT and stopped at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
KAFKA_VERSION="${KAFKA_VERSION:-$(sed -n 's/^KAFKA_VERSION="\${KAFKA_VERSION:-\(.*\)}"$/\1/p' hack/kafka.sh)}"
export KAFKA_VERSION
CACHE="${MILLRACE_CACHE:-${HOME}/.cache/millrace}"
OUT="${CACHE}/peer-bench"
KS="${OUT}/ks-${KAFKA_VERSION}"
BIN="${OUT}/bin"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

log() { printf '[peer-bench] %s\n' "$*" >&2; }

build_ks() {
  local sum
  sum="$(cat hack/peer-bench/pom.xml $(find hack/peer-bench/src -type f | sort) | sha256sum | cut -c1-16)"
  if [[ -f "${KS}/.built-${sum}" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || { log "mvn is not on PATH"; exit 1; }
  log "building the Kafka Streams ${KAFKA_VERSION} application with Maven into ${KS}"
  rm -rf "${KS}"
  mkdir -p "${KS}"
  if ! mvn -B -Dstyle.color=never -f hack/peer-bench/pom.xml -Dkafka.version="${KAFKA_VERSION}" -Dpeer.out="${KS}/target" \
    compile "${DEP_PLUGIN}:copy-dependencies" -DincludeScope=runtime -DoutputDirectory="${KS}/libs" >"${KS}/mvn.log" 2>&1; then
    tail -n 40 "${KS}/mvn.log" >&2
    log "maven failed (full log: ${KS}/mvn.log)"
    exit 1
  fi
  touch "${KS}/.built-${sum}"
}

build_go() {
  log "building the Millrace binaries into ${BIN}"
  mkdir -p "${BIN}"
  go build -o "${BIN}/" ./cmd/millrace-io ./cmd/millrace-state ./cmd/identity ./cmd/wordcount-split ./cmd/wordcount-sum ./cmd/millrace-bench
}

build_baseline() {
  local commit dir
  commit="$(git rev-parse --short "${BASELINE}")"
  dir="${OUT}/baseline-${commit}"
  if [[ ! -x "${dir}/bin/millrace-bench" ]]; then
    log "building the baseline ${commit} into ${dir}"
    rm -rf "${dir}"
    mkdir -p "${dir}/src"
    git archive "${commit}" | tar -x -C "${dir}/src"
    (cd "${dir}/src" && go build -o "${dir}/bin/" ./cmd/millrace-io ./cmd/millrace-state ./cmd/identity ./cmd/wordcount-split ./cmd/wordcount-sum ./cmd/millrace-bench)
  fi
  BASELINE_ARGS=(--baseline-bin-dir "${dir}/bin")
}

build_ks
build_go
BASELINE_ARGS=()
[[ -z "${BASELINE:-}" ]] || build_baseline

started=""
if [[ -z "${MILLRACE_KAFKA_BOOTSTRAP:-}" ]]; then
  MILLRACE_KAFKA_BOOTSTRAP="$(hack/kafka.sh start | tail -n 1)"
  started=1
  trap 'hack/kafka.sh stop >/dev/null 2>&1 || true' EXIT
else
  log "using the broker at ${MILLRACE_KAFKA_BOOTSTRAP} (Kafka Streams is ${KAFKA_VERSION}: the broker should be too)"
fi
log "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
"${BIN}/millrace-bench" peer --bootstrap "${MILLRACE_KAFKA_BOOTSTRAP}" --bin-dir "${BIN}" \
  --ks-classpath "${KS}/target/classes:${KS}/libs/*" "${BASELINE_ARGS[@]}" "$@"
log "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
[[ -z "${started}" ]] || log "stopping the broker"

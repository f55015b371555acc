#!/usr/bin/env bash
# hack/test.sh - run Millrace's tests with everything they need, as `make test` and CI do.
#
#   1. kube-apiserver, etcd and kube-controller-manager for the envtest suites, built once into the
#      cache by hack/envtest-assets.sh (cold: ~10 minutes on 2 cores; warm: instant);
#   2. the Prometheus Operator CRDs generated from its Go types (hack/third-party-crds.sh), used
#      when the real CRD files of ../shared/crds are absent;
#   3. a real Apache Kafka broker (KRaft) on loopback for the integration tier, from hack/kafka.sh
#      (jars fetched once from Maven Central into the cache), and a second one with SCRAM and ACLs
#      for the Strimzi test double (port MILLRACE_DOUBLE_KAFKA_PORT, default 19192), both stopped
#      again when the tests end;
#   4. go test with the arguments given (default ./...);
#   5. the Python SDK's tests (hack/python.sh test: pytest against the real sidecar binaries, on
#      kfake and on the broker above), unless MILLRACE_PYTHON_TESTS=0.
#
# MILLRACE_KAFKA_BOOTSTRAP, when already set, points the integration tier at that broker instead.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh | tail -n 1)"
export KUBEBUILDER_ASSETS
# The Prometheus Operator CRDs, for when the real ones (../shared/crds) are not at hand.
MILLRACE_PROMETHEUS_CRDS="$(hack/third-party-crds.sh | tail -n 1)"
export MILLRACE_PROMETHEUS_CRDS

# Brokers this script started, stopped on exit.
started_ports=()
stop_brokers() {
  local p
  for p in "${started_ports[@]}"; do KAFKA_PORT="${p}" hack/kafka.sh stop >/dev/null 2>&1 || true; done
}
trap stop_brokers EXIT

if [[ -z "${MILLRACE_KAFKA_BOOTSTRAP:-}" ]]; then
  export KAFKA_PORT="${KAFKA_PORT:-19092}"
  MILLRACE_KAFKA_BOOTSTRAP="$(hack/kafka.sh start | tail -n 1)"
  export MILLRACE_KAFKA_BOOTSTRAP
  started_ports+=("${KAFKA_PORT}")
fi
echo "test: envtest assets in ${KUBEBUILDER_ASSETS}; Kafka broker at ${MILLRACE_KAFKA_BOOTSTRAP}" >&2

# A second broker for the Strimzi test double (e2e/strimzidouble): a SCRAM-SHA-512 listener and
# Kafka's StandardAuthorizer, ANONYMOUS (the PLAINTEXT listener) a super user. Ports: P (PLAINTEXT),
# P+1 (controller), P+2 (SASL), P from MILLRACE_DOUBLE_KAFKA_PORT.
# MILLRACE_STRIMZI_DOUBLE_BOOTSTRAP (and _SASL), when already set, point the tests at that broker instead.
if [[ -z "${MILLRACE_STRIMZI_DOUBLE_BOOTSTRAP:-}" ]]; then
  double_port="${MILLRACE_DOUBLE_KAFKA_PORT:-19192}"
  sasl_port=$((double_port + 2))
  MILLRACE_STRIMZI_DOUBLE_BOOTSTRAP="$(KAFKA_PORT="${double_port}" KAFKA_SASL_PORT="${sasl_port}" \
    KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}" hack/kafka.sh start | tail -n 1)"
  started_ports+=("${double_port}")
  export MILLRACE_STRIMZI_DOUBLE_BOOTSTRAP MILLRACE_STRIMZI_DOUBLE_BOOTSTRAP_SASL="127.0.0.1:${sasl_port}"
fi
echo "test: Strimzi test double's broker at ${MILLRACE_STRIMZI_DOUBLE_BOOTSTRAP} (SASL ${MILLRACE_STRIMZI_DOUBLE_BOOTSTRAP_SASL:-unset})" >&2

if [[ $# -eq 0 ]]; then
  set -- ./...
fi
status=0
go test "$@" || status=$?
if [[ "${MILLRACE_PYTHON_TESTS:-1}" != 0 ]]; then
  hack/python.sh test || status=$?
fi
exit "$status"

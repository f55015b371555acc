#!/usr/bin/env bash
# hack/test.sh - run Millrace's tests with everything they need, as `make test` and CI do.
#
#   1. kube-apiserver, etcd and kube-controller-manager for the envtest suites, built once into the
#      cache by hack/envtest-assets.sh (cold: ~10 minutes on 2 cores; warm: instant);
#   2. the Prometheus Operator CRDs generated from its Go types (hack/third-party-crds.sh), used
#      when the real CRD files of ../shared/crds are absent;
#   3. a real Apache Kafka broker (KRaft) on loopback for the integration tier, from hack/kafka.sh
#      (jars fetched once from Maven Central into the cache), stopped again when the tests end;
#   4. go test with the arguments given (default ./...).
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

if [[ -z "${MILLRACE_KAFKA_BOOTSTRAP:-}" ]]; then
  export KAFKA_PORT="${KAFKA_PORT:-19092}"
  MILLRACE_KAFKA_BOOTSTRAP="$(hack/kafka.sh start | tail -n 1)"
  export MILLRACE_KAFKA_BOOTSTRAP
  trap 'hack/kafka.sh stop >/dev/null 2>&1 || true' EXIT
fi
echo "test: envtest assets in ${KUBEBUILDER_ASSETS}; Kafka broker at ${MILLRACE_KAFKA_BOOTSTRAP}" >&2

if [[ $# -eq 0 ]]; then
  set -- ./...
fi
go test "$@"

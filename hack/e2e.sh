#!/usr/bin/env bash
# hack/e2e.sh - the cluster tier (make test-e2e): Millrace on a real Kubernetes cluster.
#
# With no KUBECONFIG given (or MILLRACE_E2E_LOCAL=1), it brings up everything on this machine:
#   1. the single-node cluster (hack/cluster.sh up: kubelet, containerd, API server, ...);
#   2. the images of every binary (make images), loaded into the node's containerd;
#   3. a real Kafka broker on the node's bridge address, reachable from pods, with a PLAINTEXT
#      listener (ANONYMOUS is a super user: operators, KEDA and the suite) and a SCRAM-SHA-512
#      listener with Kafka's StandardAuthorizer (the authenticated Pipelines);
#   4. the real KEDA (hack/keda.sh install) and the operator (make deploy, its shipped RBAC,
#      leader election on, the sidecar images passed by the deployment);
#   5. go test -tags cluster ./e2e/cluster/ against it.
# The cluster stays up afterwards, so a second run is fast (the suite cleans up its namespaces
# itself); MILLRACE_E2E_DOWN=1 (CI) takes it and the broker down at the end, restoring the host.
#
# Against another cluster (kind, a cloud cluster): set MILLRACE_E2E_LOCAL=0 and KUBECONFIG, push
# or load the images yourself (make docker-build, or make images and your runtime's import),
# install KEDA and deploy the operator (make deploy), and give the suite a broker pods can reach:
#   MILLRACE_E2E_LOCAL=0 MILLRACE_E2E_KAFKA=broker:9092 MILLRACE_E2E_KAFKA_SCRAM=broker:9094 make test-e2e
# Strimzi: by default the suite runs its Strimzi test double (MILLRACE_E2E_STRIMZI=double);
# MILLRACE_E2E_STRIMZI=real uses the cluster's Strimzi.
#
# Arguments are added to go test's (-count=1 -timeout 45m -v), for example -run TestKEDA.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
CACHE="${MILLRACE_CACHE:-${HOME}/.cache/millrace}"
export MILLRACE_CACHE="${CACHE}"
log() { printf '[e2e %s] %s\n' "$(date +%T)" "$*" >&2; }

LOCAL="${MILLRACE_E2E_LOCAL:-}"
if [[ -z "${LOCAL}" ]]; then
  if [[ -z "${KUBECONFIG:-}" ]]; then LOCAL=1; else LOCAL=0; fi
fi

KAFKA_E2E_PORT="${MILLRACE_E2E_KAFKA_PORT:-19292}"
GW=10.88.0.1
t0=$(date +%s)
teardown() {
  KAFKA_PORT="${KAFKA_E2E_PORT}" hack/kafka.sh stop >/dev/null 2>&1 || true
  hack/cluster.sh down
}
if [[ "${MILLRACE_E2E_DOWN:-0}" == 1 && "${LOCAL}" == 1 ]]; then trap teardown EXIT; fi
if [[ "${LOCAL}" == 1 ]]; then
  KUBECONFIG="$(hack/cluster.sh up | tail -n 1)"
  export KUBECONFIG
  export PATH="${CACHE}/cluster/1.36.3/bin:${PATH}"
  t_cluster=$(date +%s)
  make -s images >&2
  t_images=$(date +%s)
  # The broker advertises the node's bridge address: pods and this machine both reach it.
  if ! KAFKA_PORT="${KAFKA_E2E_PORT}" hack/kafka.sh status >/dev/null 2>&1; then
    KAFKA_HOST="${GW}" KAFKA_PORT="${KAFKA_E2E_PORT}" KAFKA_SASL_PORT="$((KAFKA_E2E_PORT + 2))" hack/kafka.sh start >/dev/null
  fi
  export MILLRACE_E2E_KAFKA="${GW}:${KAFKA_E2E_PORT}" MILLRACE_E2E_KAFKA_SCRAM="${GW}:$((KAFKA_E2E_PORT + 2))"
  export MILLRACE_E2E_CTR="${ROOT}/hack/cluster.sh ctr"
  t_kafka=$(date +%s)
  KUSTOMIZE="$(hack/tools.sh kustomize | tail -n 1)" hack/keda.sh install
  t_keda=$(date +%s)
  make -s deploy >&2
  # A redeploy with a rebuilt image of the same tag needs new pods to run it.
  kubectl -n millrace-system rollout restart deploy/millrace-controller-manager >/dev/null
  kubectl -n millrace-system rollout status deploy/millrace-controller-manager --timeout=180s >&2
  t_deploy=$(date +%s)
  log "setup: cluster $((t_cluster - t0))s, images $((t_images - t_cluster))s, kafka $((t_kafka - t_images))s, keda $((t_keda - t_kafka))s, operator $((t_deploy - t_keda))s; total $((t_deploy - t0))s"
fi
[[ -n "${KUBECONFIG:-}" ]] || { log "KUBECONFIG is not set"; exit 1; }
[[ -n "${MILLRACE_E2E_KAFKA:-}" ]] || { log "MILLRACE_E2E_KAFKA is not set (a broker pods can reach)"; exit 1; }
export MILLRACE_E2E_REPORT="${MILLRACE_E2E_REPORT:-${CACHE}/e2e-report.tsv}"

rc=0
go test -tags cluster -count=1 -timeout "${MILLRACE_E2E_TIMEOUT:-45m}" -v "$@" ./e2e/cluster/ || rc=$?
log "suite finished in $(($(date +%s) - t0))s (rc ${rc}); figures in ${MILLRACE_E2E_REPORT}"
exit "${rc}"

#!/usr/bin/env bash
# hack/keda.sh - the real KEDA (operator and metrics API server) in the cluster of the current
# KUBECONFIG, built from the Go module proxy and installed from KEDA's own manifests.
#
#   hack/keda.sh build     build keda and keda-adapter v2.21.0 into the cache (cold ~10 min on 2 cores)
#   hack/keda.sh images    build their images (distroless layout, user 65532) as docker-archive tarballs;
#                          prints the tarballs
#   hack/keda.sh install   build + images + load them into hack/cluster.sh's node (when that cluster is
#                          the one in use), then apply KEDA's config/minimal (CRDs, RBAC, operator,
#                          metrics API server, APIService) with the images swapped for the local
#                          ones, and wait until the external metrics APIService is Available
#   hack/keda.sh uninstall delete what install applied
#
# KEDA's admission webhooks (config/webhooks, failurePolicy Ignore) are not installed: config/minimal
# is KEDA's own manifest set without them. The operator runs with its certificate rotation on, so
# it makes the metrics API server's certificate and the APIService's caBundle itself, as in a user's
# cluster. Environment: MILLRACE_CACHE (default ~/.cache/millrace), KUSTOMIZE (default kustomize).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KEDA_VERSION="2.21.0"
# KEDA's go.mod replaces this module; a module that requires KEDA has to repeat the replace.
NEXUS_REPLACE="github.com/nexus-rpc/nexus-proto-annotations v0.1.0 => github.com/nexus-rpc/nexus-proto-annotations v0.1.1-0.20260629224316-835bd8d49cb4"
CACHE="${MILLRACE_CACHE:-${HOME}/.cache/millrace}"
BIN="${CACHE}/keda/${KEDA_VERSION}/bin"
IMAGES="${CACHE}/keda/${KEDA_VERSION}/images"
MOD="${CACHE}/build/keda"
OPERATOR_IMG="millrace.local/keda:${KEDA_VERSION}"
ADAPTER_IMG="millrace.local/keda-metrics-apiserver:${KEDA_VERSION}"
KUSTOMIZE="${KUSTOMIZE:-kustomize}"

log() { printf '[keda %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

module() {
  mkdir -p "${MOD}"
  cd "${MOD}"
  export GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0
  local want
  want=$(printf 'module millrace.local/keda\n\ngo 1.25\n\nrequire github.com/kedacore/keda/v2 v%s\n\nreplace %s\n' "${KEDA_VERSION}" "${NEXUS_REPLACE}")
  if [[ "$(cat go.mod.pins 2>/dev/null)" != "${want}" ]]; then
    printf '%s\n' "${want}" >go.mod
    printf '%s' "${want}" >go.mod.pins
    rm -f go.sum
    printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "github.com/kedacore/keda/v2/cmd/adapter"\n\t_ "github.com/kedacore/keda/v2/cmd/operator"\n)\n' >tools.go
    go mod tidy >&2
  fi
}

build() {
  [[ -x "${BIN}/keda" && -x "${BIN}/keda-adapter" ]] && return 0
  mkdir -p "${BIN}" "${CACHE}"
  exec 7>"${CACHE}/keda.lock"
  flock 7
  (
    module
    local c out
    for c in operator adapter; do
      out=keda; [[ ${c} == adapter ]] && out=keda-adapter
      [[ -x "${BIN}/${out}" ]] && continue
      log "building KEDA ${c} v${KEDA_VERSION} (cold: minutes)"
      go build -trimpath -ldflags "-s -w" -o "${BIN}/.${out}.tmp" "github.com/kedacore/keda/v2/cmd/${c}"
      mv -f "${BIN}/.${out}.tmp" "${BIN}/${out}"
    done
  )
  exec 7>&-
}

images() {
  build
  mkdir -p "${IMAGES}"
  local b ref
  for b in keda keda-adapter; do
    ref=${OPERATOR_IMG}; [[ ${b} == keda-adapter ]] && ref=${ADAPTER_IMG}
    if [[ ! -f "${IMAGES}/${b}.tar" || "${BIN}/${b}" -nt "${IMAGES}/${b}.tar" ]]; then
      (cd "${ROOT}" && go run ./hack/imagebuild -raw "${BIN}/${b}=/${b}" -user 65532:65532 -out "${IMAGES}" "${b}=${ref}" >/dev/null)
    fi
    echo "${IMAGES}/${b}.tar"
  done
}

moddir() { (module >/dev/null && go list -m -f '{{.Dir}}' github.com/kedacore/keda/v2); }

overlay() {
  local dir=$1 src
  src="$(moddir)/config/minimal"
  # kustomize refuses a base outside the overlay's tree when it is read-only in the module cache
  # only for files, not for folders: a relative path to the module's folder works.
  cat >"${dir}/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $(realpath --relative-to="${dir}" "${src}")
images:
- {name: ghcr.io/kedacore/keda, newName: ${OPERATOR_IMG%:*}, newTag: "${KEDA_VERSION}"}
- {name: ghcr.io/kedacore/keda-metrics-apiserver, newName: ${ADAPTER_IMG%:*}, newTag: "${KEDA_VERSION}"}
patches:
- target: {kind: Deployment}
  patch: |-
    - {op: replace, path: /spec/template/spec/containers/0/imagePullPolicy, value: IfNotPresent}
EOF
}

install() {
  command -v kubectl >/dev/null || die "kubectl is not on PATH"
  local tars
  tars=$(images)
  # Load the images when the cluster in use is the project's own node.
  if "${ROOT}/hack/cluster.sh" status >/dev/null 2>&1 && [[ "${KUBECONFIG:-}" == "$("${ROOT}/hack/cluster.sh" kubeconfig)" ]]; then
    # shellcheck disable=SC2086
    "${ROOT}/hack/cluster.sh" load ${tars}
  fi
  local dir; dir=$(mktemp -d); trap 'rm -rf "${dir}"' RETURN
  overlay "${dir}"
  "${KUSTOMIZE}" build "${dir}" | kubectl apply --server-side --force-conflicts --field-manager=millrace-e2e -f - >/dev/null
  log "applied KEDA ${KEDA_VERSION}; waiting for the operator, the metrics API server and the APIService"
  kubectl -n keda rollout status deploy/keda-operator --timeout=180s >&2
  kubectl -n keda rollout status deploy/keda-metrics-apiserver --timeout=180s >&2
  kubectl wait --for=condition=Available apiservice/v1beta1.external.metrics.k8s.io --timeout=180s >&2
  log "KEDA ready"
}

uninstall() {
  local dir; dir=$(mktemp -d); trap 'rm -rf "${dir}"' RETURN
  overlay "${dir}"
  "${KUSTOMIZE}" build "${dir}" | kubectl delete --ignore-not-found --wait=false -f - >/dev/null
}

case "${1:-}" in
build) build ;;
images) images ;;
install) install ;;
uninstall) uninstall ;;
*) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

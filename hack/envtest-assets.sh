#!/usr/bin/env bash
# hack/envtest-assets.sh - build the envtest control-plane binaries into a cache outside the clone.
#
# Builds, from the Go module proxy (no downloads from dl.k8s.io / GitHub releases needed):
#   kube-apiserver           k8s.io/kubernetes v1.36.3 (staging modules pinned to v0.36.3)
#   kube-controller-manager  k8s.io/kubernetes v1.36.3
#   etcd                     go.etcd.io/etcd/server/v3 v3.6.6
# into  ${MILLRACE_CACHE:-~/.cache/millrace}/envtest/1.36.3/
# using throwaway modules in ${MILLRACE_CACHE}/build/{k8s,etcd}.
#
# Idempotent: when the binaries (and the stamp file written after a successful build) are already
# there it does nothing and returns immediately. Safe to run concurrently (flock).
# Cold: ~10 min on 2 cores; warm: well under a second.
#
# The assets directory is printed as the LAST line of stdout; everything else goes to stderr:
#   export KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)"
#
# Environment:
#   MILLRACE_CACHE   cache root (default: ~/.cache/millrace)
#   ENVTEST_FORCE=1  rebuild even if the binaries exist
set -euo pipefail

K8S_VERSION="1.36.3"        # k8s.io/kubernetes tag (without the v)
K8S_STAGING_VERSION="0.36.3" # matching version of the k8s.io/* staging modules
ETCD_VERSION="3.6.6"

CACHE="${MILLRACE_CACHE:-${HOME}/.cache/millrace}"
ASSETS="${CACHE}/envtest/${K8S_VERSION}"
BUILD="${CACHE}/build"
STAMP="${ASSETS}/.complete"
BINS=(kube-apiserver etcd kube-controller-manager)

log() { printf '[envtest-assets] %s\n' "$*" >&2; }

have_all() {
  [[ -f "${STAMP}" ]] || return 1
  local b
  for b in "${BINS[@]}"; do
    [[ -x "${ASSETS}/${b}" ]] || return 1
  done
}

if [[ "${ENVTEST_FORCE:-0}" != "1" ]] && have_all; then
  printf '%s\n' "${ASSETS}"
  exit 0
fi

command -v go >/dev/null 2>&1 || { log "go is not on PATH"; exit 1; }

mkdir -p "${ASSETS}" "${BUILD}"
# Serialise concurrent runs (CI job + developer shell); the second waits and then finds the cache warm.
exec 9>"${CACHE}/envtest.lock"
if ! flock -n 9; then
  log "another run holds ${CACHE}/envtest.lock; waiting..."
  flock 9
fi
if [[ "${ENVTEST_FORCE:-0}" != "1" ]] && have_all; then
  printf '%s\n' "${ASSETS}"
  exit 0
fi
rm -f "${STAMP}"

# Isolate the throwaway modules from any go.work / project settings of the caller.
export GOWORK=off GOFLAGS="-buildvcs=false" CGO_ENABLED=0
start=$(date +%s)

build_k8s() {
  local dir="${BUILD}/k8s"
  mkdir -p "${dir}"
  cd "${dir}"
  log "resolving k8s.io/kubernetes v${K8S_VERSION} in ${dir}"

  # Read the staging-module replace block from k8s.io/kubernetes' own go.mod.
  local kgomod
  kgomod=$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [[ -f "${kgomod}" ]] || { log "could not download k8s.io/kubernetes v${K8S_VERSION} go.mod"; return 1; }
  local staging
  staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._/-]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "${kgomod}" | sort -u)
  [[ -n "${staging}" ]] || { log "no staging replaces found in ${kgomod}"; return 1; }

  {
    printf 'module millrace.local/envtest-k8s\n\ngo 1.25\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "${K8S_VERSION}"
    local m
    for m in ${staging}; do
      printf '\t%s => %s v%s\n' "${m}" "${m}" "${K8S_STAGING_VERSION}"
    done
    printf ')\n'
  } >go.mod.new
  # Only reset the module when the wanted pins changed, so warm re-runs keep go.sum.
  if ! cmp -s go.mod.new go.mod.pins 2>/dev/null; then
    cp go.mod.new go.mod
    cp go.mod.new go.mod.pins
    rm -f go.sum
  fi
  rm -f go.mod.new
  cat >tools.go <<'EOF'
//go:build tools

// Package tools pins the commands built by hack/envtest-assets.sh and hack/cluster.sh (one
// module, one go.sum, one build cache for the control plane and the node).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
EOF
  go mod tidy >&2

  # Same version stamps as the upstream release build (hack/lib/version.sh), so --version is right.
  local ld="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X ${pkg}.gitVersion=v${K8S_VERSION}"
    ld+=" -X ${pkg}.gitMajor=${K8S_VERSION%%.*}"
    ld+=" -X ${pkg}.gitMinor=$(cut -d. -f2 <<<"${K8S_VERSION}")"
    ld+=" -X ${pkg}.gitTreeState=clean"
  done

  local cmd
  for cmd in kube-apiserver kube-controller-manager; do
    log "building ${cmd} v${K8S_VERSION} (cold: several minutes)"
    go build -trimpath -ldflags "${ld}" -o "${ASSETS}/.${cmd}.tmp" "k8s.io/kubernetes/cmd/${cmd}"
    mv -f "${ASSETS}/.${cmd}.tmp" "${ASSETS}/${cmd}"
  done
}

build_etcd() {
  local dir="${BUILD}/etcd"
  mkdir -p "${dir}"
  cd "${dir}"
  log "building etcd v${ETCD_VERSION} in ${dir}"
  local want
  want=$(printf 'module millrace.local/envtest-etcd\n\ngo 1.25\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' "${ETCD_VERSION}")
  if [[ "$(cat go.mod.pins 2>/dev/null)" != "${want}" ]]; then
    printf '%s\n' "${want}" >go.mod
    printf '%s' "${want}" >go.mod.pins
    rm -f go.sum
  fi
  cat >tools.go <<'EOF'
//go:build tools

// Package tools pins the command built by hack/envtest-assets.sh.
package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w" -o "${ASSETS}/.etcd.tmp" go.etcd.io/etcd/server/v3
  mv -f "${ASSETS}/.etcd.tmp" "${ASSETS}/etcd"
}

if [[ ! -x "${ASSETS}/etcd" || "${ENVTEST_FORCE:-0}" == "1" ]]; then
  (build_etcd)
fi
if [[ ! -x "${ASSETS}/kube-apiserver" || ! -x "${ASSETS}/kube-controller-manager" || "${ENVTEST_FORCE:-0}" == "1" ]]; then
  (build_k8s)
fi

# Smoke check: every binary must run and report its version.
for b in "${BINS[@]}"; do
  if ! v=$("${ASSETS}/${b}" --version 2>&1 | head -n 1); then
    log "${b} --version failed: ${v}"
    exit 1
  fi
  log "${b}: ${v}"
done

date -u +%Y-%m-%dT%H:%M:%SZ >"${STAMP}"
log "done in $(($(date +%s) - start))s"
printf '%s\n' "${ASSETS}"

#!/usr/bin/env bash
# hack/third-party-crds.sh - the Prometheus Operator CRDs the envtest suites install when the real
# CRD files (../shared/crds) are not next to the checkout: generated with controller-gen from the
# monitoring/v1 Go types of the module version in go.mod (their kubebuilder markers are the
# source of the upstream CRDs), into the cache outside the clone. Prints the folder.
#
# Usage: hack/third-party-crds.sh [path to controller-gen; default: the one hack/tools.sh pins]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
controller_gen="${1:-}"
cache="${MILLRACE_CACHE:-${HOME}/.cache/millrace}"
module=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring
version="$(go list -m -f '{{.Version}}' "$module")"
out="${cache}/crds/prometheus-operator-${version}"
if [[ -f "${out}/.complete" ]]; then
  echo "$out"
  exit 0
fi
if [[ -z "$controller_gen" ]]; then
  controller_gen="$(hack/tools.sh controller-gen | tail -n 1)"
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$controller_gen" crd:allowDangerousTypes=true,maxDescLen=0 paths="${module}/v1" output:crd:dir="$tmp" >&2
mkdir -p "$out"
cp "$tmp"/monitoring.coreos.com_servicemonitors.yaml "$tmp"/monitoring.coreos.com_prometheusrules.yaml "$out"/
touch "$out/.complete"
echo "$out"

#!/usr/bin/env bash
# hack/bundle-deploy-overlay.sh DIR BASE IMG IO_SIDECAR_IMG STATE_SIDECAR_IMG
#
# Writes into DIR a kustomize overlay of BASE (config/default) that sets the operator's image and
# the sidecar images it deploys, for `make deploy`. The overlay lives outside the tree, so that a
# deploy with other images leaves config/ as committed.
set -euo pipefail
dir="$1" img="$3" io="$4" state="$5"
# kustomize takes only relative paths to a base.
base="$(realpath --relative-to="$dir" "$2")"

# name:tag or name@digest -> kustomize's images fields.
split_image() {
  local ref="$1"
  if [[ "$ref" == *@* ]]; then
    printf '  newName: %s\n  digest: %s\n' "${ref%@*}" "${ref#*@}"
  elif [[ "${ref##*/}" == *:* ]]; then
    printf '  newName: %s\n  newTag: %s\n' "${ref%:*}" "${ref##*:}"
  else
    printf '  newName: %s\n' "$ref"
  fi
}

{
  echo "apiVersion: kustomize.config.k8s.io/v1beta1"
  echo "kind: Kustomization"
  echo "resources:"
  echo "- $base"
  echo "images:"
  echo "- name: ghcr.io/millrace-dev/millrace-operator"
  split_image "$img"
  cat <<PATCH
patches:
- patch: |-
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: millrace-controller-manager
      namespace: millrace-system
    spec:
      template:
        spec:
          containers:
          - name: manager
            env:
            - name: RELATED_IMAGE_IO_SIDECAR
              value: "$io"
            - name: RELATED_IMAGE_STATE_SIDECAR
              value: "$state"
PATCH
} >"$dir/kustomization.yaml"

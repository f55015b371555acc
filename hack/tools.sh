#!/usr/bin/env bash
# hack/tools.sh - the generators and tools the Makefile runs, each at one exact version, installed
# by the project itself into the cache outside the clone. Generated files carry their generator's
# version (protoc-gen-go writes it into every .pb.go), so `make verify` can only pass everywhere
# when every machine runs the same build of every generator: this file is the one place their
# versions are written down.
#
# Usage: hack/tools.sh NAME              installs NAME once, prints its path as the last line of stdout
#        hack/tools.sh exec NAME [ARGS]  installs NAME once, then runs it with ARGS
#        hack/tools.sh --list            prints "NAME VERSION" for every tool
#
# NAME is one of controller-gen, kustomize, protoc-gen-go, protoc-gen-go-grpc,
# protoc-gen-go-vtproto, protoc. The Go tools are built with `go install module@version` (checked
# against the Go checksum database); protoc is the binary shipped in PyPI's grpcio-tools wheel,
# installed with its dependencies pinned in a virtualenv. Each tool lives in its own versioned
# folder, ${MILLRACE_CACHE:-~/.cache/millrace}/tools/NAME/VERSION/, so changing a version here
# installs the new one beside the old. Safe to run concurrently (flock).
#
# protoc-gen-go is kept at the version of google.golang.org/protobuf in go.mod, and
# protoc-gen-go-vtproto at that of github.com/planetscale/vtprotobuf: bump them together, then
# `make generate` (executor-runtime/proto's tests check the committed code against these pins).
set -euo pipefail

declare -A version=(
  [controller-gen]=v0.23.0
  [kustomize]=v5.7.1
  [protoc-gen-go]=v1.36.12
  [protoc-gen-go-grpc]=v1.6.2
  [protoc-gen-go-vtproto]=v0.6.1-0.20240319094008-0393e58bdf10
  # grpcio-tools 1.85.1 ships protoc 35.1, which reports itself as v7.35.1.
  [protoc]=1.85.1
)
declare -A package=(
  [controller-gen]=sigs.k8s.io/controller-tools/cmd/controller-gen
  [kustomize]=sigs.k8s.io/kustomize/kustomize/v5
  [protoc-gen-go]=google.golang.org/protobuf/cmd/protoc-gen-go
  [protoc-gen-go-grpc]=google.golang.org/grpc/cmd/protoc-gen-go-grpc
  [protoc-gen-go-vtproto]=github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto
)
# protoc's Python packages, every one pinned so that the install is the same on every machine.
protoc_pip=(grpcio-tools==1.85.1 grpcio==1.85.3 protobuf==7.36.2 typing_extensions==4.16.0)

log() { printf '[tools] %s\n' "$*" >&2; }

if [[ "${1:-}" == "--list" ]]; then
  for name in "${!version[@]}"; do echo "$name ${version[$name]}"; done | sort
  exit 0
fi
run=false
if [[ "${1:-}" == exec ]]; then
  run=true
  shift
fi
name="${1:?usage: hack/tools.sh [exec] NAME [ARGS] | --list}"
shift
[[ -n "${version[$name]:-}" ]] || { log "unknown tool $name (hack/tools.sh --list)"; exit 2; }

cache="${MILLRACE_CACHE:-${HOME}/.cache/millrace}"
dir="${cache}/tools/${name}/${version[$name]}"
bin="${dir}/${name}"
if [[ "$name" == protoc ]]; then
  # A wrapper so that callers run protoc like any other binary.
  bin="${dir}/bin/protoc"
fi
installed() {
  [[ -x "$bin" && -f "${dir}/.complete" ]] || return 1
  if [[ "$run" == true ]]; then
    exec "$bin" "$@"
  fi
  echo "$bin"
}
installed "$@" && exit 0

mkdir -p "${cache}/tools"
exec 9>"${cache}/tools/.lock"
flock 9
installed "$@" && exit 0

log "installing $name ${version[$name]} into $dir"
rm -rf "$dir"
mkdir -p "$dir"
if [[ "$name" == protoc ]]; then
  python3 -m venv "${dir}/py" >&2
  "${dir}/py/bin/pip" install --quiet --disable-pip-version-check --no-deps "${protoc_pip[@]}" >&2
  mkdir -p "${dir}/bin"
  cat >"$bin" <<EOF
#!/usr/bin/env bash
exec "${dir}/py/bin/python" -m grpc_tools.protoc "\$@"
EOF
  chmod +x "$bin"
else
  # Outside any module, so that the tool builds from its own go.mod and nothing of this one.
  (cd "$dir" && GOBIN="$dir" GOFLAGS= GOWORK=off GO111MODULE=on go install "${package[$name]}@${version[$name]}" >&2)
fi
touch "${dir}/.complete"
exec 9>&-
installed "$@"

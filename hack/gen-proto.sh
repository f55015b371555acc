#!/usr/bin/env bash
# Regenerates the executor runtime's protobuf Go code. Installs protoc (from PyPI's grpcio-tools),
# protoc-gen-go and protoc-gen-go-grpc into ~/.cache/millrace/tools once, at the versions of
# google.golang.org/protobuf, google.golang.org/grpc/cmd/protoc-gen-go-grpc and
# github.com/planetscale/vtprotobuf (fast Go marshalling of the same wire format) in go.mod's graph.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${MILLRACE_TOOLS:-$HOME/.cache/millrace/tools}"
cd "$root"

pb_version="$(go list -m -f '{{.Version}}' google.golang.org/protobuf)"
grpc_gen_version="$(go list -m -f '{{.Version}}' google.golang.org/grpc/cmd/protoc-gen-go-grpc 2>/dev/null || echo v1.6.2)"
grpcio_tools_version="${GRPCIO_TOOLS_VERSION:-1.85.1}"
vtproto_version="$(go list -m -f '{{.Version}}' github.com/planetscale/vtprotobuf)"

mkdir -p "$tools/bin"
stamp="$tools/.stamp-$pb_version-$grpc_gen_version-$grpcio_tools_version-$vtproto_version"
if [[ ! -f "$stamp" ]]; then
  GOBIN="$tools/bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$pb_version"
  GOBIN="$tools/bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$grpc_gen_version"
  GOBIN="$tools/bin" go install "github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@$vtproto_version"
  if [[ ! -x "$tools/py/bin/python" ]]; then
    python3 -m venv "$tools/py"
  fi
  "$tools/py/bin/pip" install --quiet "grpcio-tools==$grpcio_tools_version"
  touch "$stamp"
fi

export PATH="$tools/bin:$PATH"
for proto in executor-runtime/proto/function/v1/function.proto executor-runtime/proto/state/v1/state.proto; do
  "$tools/py/bin/python" -m grpc_tools.protoc \
    --proto_path=. \
    --go_out=. --go_opt=module=github.com/millrace-dev/millrace \
    --go-grpc_out=. --go-grpc_opt=module=github.com/millrace-dev/millrace \
    --go-vtproto_out=. --go-vtproto_opt=module=github.com/millrace-dev/millrace,features=marshal+unmarshal+size+unmarshal_unsafe \
    "$proto"
done
echo "generated protobuf code under executor-runtime/proto"

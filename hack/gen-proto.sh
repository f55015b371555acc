#!/usr/bin/env bash
# Regenerates the executor runtime's protobuf code with the exact generator versions hack/tools.sh
# pins, so that the output is byte for byte the same on every machine:
#   - Go: protoc, protoc-gen-go, protoc-gen-go-grpc and protoc-gen-go-vtproto (fast Go marshalling
#     of the same wire format), under executor-runtime/proto;
#   - Python: the same protoc's Python, .pyi and gRPC Python generators (from the pinned
#     grpcio-tools), under executor-runtime/sdk/python/src/millrace/_proto, committed so that the
#     Python SDK generates nothing when it is installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

protoc="$(hack/tools.sh protoc | tail -n 1)"
plugins=()
for plugin in protoc-gen-go protoc-gen-go-grpc protoc-gen-go-vtproto; do
  plugins+=("--plugin=${plugin}=$(hack/tools.sh "$plugin" | tail -n 1)")
done

module=github.com/millrace-dev/millrace
for proto in executor-runtime/proto/function/v1/function.proto executor-runtime/proto/state/v1/state.proto; do
  "$protoc" "${plugins[@]}" \
    --proto_path=. \
    --go_out=. --go_opt=module="$module" \
    --go-grpc_out=. --go-grpc_opt=module="$module" \
    --go-vtproto_out=. --go-vtproto_opt=module="$module",features=marshal+unmarshal+size+unmarshal_unsafe \
    "$proto"
done
echo "generated protobuf code under executor-runtime/proto"

# Python: the generated modules import each other by the path of the .proto file, so the files are
# compiled from a copy laid out as the package they land in (millrace._proto.function.v1).
pysrc=executor-runtime/sdk/python/src
pyproto="${pysrc}/millrace/_proto"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for api in function state; do
  mkdir -p "${tmp}/millrace/_proto/${api}/v1"
  cp "executor-runtime/proto/${api}/v1/${api}.proto" "${tmp}/millrace/_proto/${api}/v1/"
  rm -f "${pyproto}/${api}/v1/${api}"_pb2*.py "${pyproto}/${api}/v1/${api}"_pb2*.pyi
  "$protoc" --proto_path="$tmp" --python_out="$pysrc" --pyi_out="$pysrc" --grpc_python_out="$pysrc" \
    "millrace/_proto/${api}/v1/${api}.proto"
done
echo "generated protobuf code under ${pyproto}"

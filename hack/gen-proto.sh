#!/usr/bin/env bash
# Regenerates the executor runtime's protobuf Go code with protoc, protoc-gen-go,
# protoc-gen-go-grpc and protoc-gen-go-vtproto (fast Go marshalling of the same wire format), each
# at the exact version hack/tools.sh pins, so that the output is byte for byte the same on every
# machine.
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

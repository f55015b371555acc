#!/usr/bin/env bash
# hack/python.sh - the Python SDK's (executor-runtime/sdk/python) environment, build and tests.
#
#   hack/python.sh venv            create the virtualenv once, print its path as the last line
#   hack/python.sh test [ARGS]     build millrace, millrace-io and millrace-state, run pytest ARGS
#   hack/python.sh build [DIR]     build the wheel and the sdist into DIR (default .../python/dist)
#
# The virtualenv lives in ${MILLRACE_CACHE:-~/.cache/millrace}/python/, one per content of
# requirements-dev.txt (every package pinned with its hashes, installed with --require-hashes) and
# per Python version, with pip's cache in the same folder, so a fresh machine with an empty HOME
# needs only python3 (3.10+) and the package index. Safe to run concurrently (flock).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sdk="${root}/executor-runtime/sdk/python"
cache="${MILLRACE_CACHE:-${HOME}/.cache/millrace}/python"
python="${PYTHON:-python3}"
log() { printf '[python] %s\n' "$*" >&2; }

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { log "$python is older than 3.10"; exit 1; }
pyver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
reqsum="$(sha256sum "${sdk}/requirements-dev.txt" | cut -c1-12)"
venv="${cache}/venv-py${pyver}-${reqsum}"
export PIP_CACHE_DIR="${cache}/pip-cache" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# Wheels of the runtime dependencies, for tests that install the SDK's wheel into a fresh
# virtualenv without the index.
wheels="${cache}/wheels-${reqsum}"

ensure_venv() {
  [[ -f "${venv}/.complete" ]] && return
  mkdir -p "$cache"
  exec 8>"${cache}/.lock"
  flock 8
  if [[ ! -f "${venv}/.complete" ]]; then
    log "creating ${venv}"
    rm -rf "$venv" "$wheels"
    "$python" -m venv "$venv" >&2
    "${venv}/bin/pip" install --quiet --require-hashes --no-deps -r "${sdk}/requirements-dev.txt" >&2
    "${venv}/bin/pip" download --quiet --require-hashes --no-deps -d "$wheels" \
      -r <(awk '/^[a-zA-Z]/{keep=($1 ~ /^(grpcio|protobuf|typing_extensions)==/)} keep' "${sdk}/requirements-dev.txt") >&2
    touch "${venv}/.complete"
  fi
  exec 8>&-
}

cmd="${1:-test}"
shift || true
case "$cmd" in
  venv)
    ensure_venv
    echo "$venv"
    ;;
  build)
    ensure_venv
    out="${1:-${sdk}/dist}"
    # Without isolation: the build backend is the pinned setuptools of the virtualenv.
    (cd "$sdk" && "${venv}/bin/python" -m build --no-isolation --outdir "$out" . >&2)
    ls "$out"/*
    ;;
  test)
    ensure_venv
    bin="${MILLRACE_BIN_DIR:-}"
    if [[ -z "$bin" ]]; then
      bin="$(mktemp -d)"
      trap 'rm -rf "$bin"' EXIT
      log "building millrace, millrace-io, millrace-state, the Go word count and testkafka into ${bin}"
      (cd "$root" && CGO_ENABLED=0 go build -trimpath -o "${bin}/" ./cmd/millrace ./cmd/millrace-io ./cmd/millrace-state ./cmd/wordcount-split ./cmd/wordcount-sum ./executor-runtime/internal/testkafka)
    fi
    export MILLRACE_BIN_DIR="$bin" MILLRACE_PY_WHEELS="$wheels" MILLRACE_PY_VENV="$venv"
    cd "$sdk"
    PYTHONPATH="${sdk}/src" "${venv}/bin/python" -m pytest -p no:cacheprovider "$@"
    ;;
  *)
    log "unknown command $cmd (venv, build, test)"
    exit 2
    ;;
esac

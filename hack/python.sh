#!/usr/bin/env bash
# hack/python.sh - the Python SDK's (executor-runtime/sdk/python) environment, build and tests.
#
#   hack/python.sh venv            create the virtualenv once, print its path as the last line
#   hack/python.sh test [ARGS]     build millrace, millrace-io and millrace-state, run pytest ARGS
#   hack/python.sh build [DIR]     build the wheel and the sdist into DIR (default .../python/dist)
#   hack/python.sh image OUT REF   build the Python example functions' image (docker-archive OUT,
#                                  tagged REF) without a container engine: see image_build below
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

# The image's interpreter: Debian's python3.11 and the libraries it and grpcio load, unpacked from
# the distribution's packages (apt-get download, dpkg -x; no maintainer scripts run) into a root
# filesystem that hack/imagebuild puts on the same base layer as the Go images. The Python is
# Debian 12's 3.11, so the runtime wheels are fetched for CPython 3.11 whatever python3 runs this
# script, with the hashes of requirements-dev.txt.
image_debs="python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libgcc-s1 libstdc++6
  zlib1g libssl3 libexpat1 libffi8 libbz2-1.0 liblzma5 libuuid1 libcrypt1 libncursesw6 libtinfo6
  libsqlite3-0 media-types"
image_python=python3.11
runtime_reqs() {
  awk '/^[a-zA-Z]/{keep=($1 ~ /^(grpcio|protobuf|typing_extensions)==/)} keep' "${sdk}/requirements-dev.txt"
}

image_build() {
  local out="$1" ref="$2"
  command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
    { log "the Python image is assembled from Debian packages: apt-get and dpkg are needed"; exit 1; }
  local arch pyarch
  arch="$(dpkg --print-architecture)"
  case "$arch" in
    amd64) pyarch=x86_64 ;;
    arm64) pyarch=aarch64 ;;
    *) log "no manylinux wheels for ${arch}"; exit 1 ;;
  esac
  local debs="${cache}/debs-${arch}-$(echo "$image_debs" | sha256sum | cut -c1-12)"
  local imgwheels="${cache}/wheels-cp311-${pyarch}-${reqsum}"
  mkdir -p "$cache"
  exec 8>"${cache}/.lock"
  flock 8
  if [[ ! -f "${debs}/.complete" ]]; then
    rm -rf "$debs" && mkdir -p "$debs"
    log "downloading Debian packages into ${debs}"
    # A stale package index names versions the archive no longer has: refresh it once and retry.
    # shellcheck disable=SC2086
    (cd "$debs" && apt-get download -q $image_debs >&2) ||
      { apt-get update -q >&2 && (cd "$debs" && apt-get download -q $image_debs >&2); }
    touch "${debs}/.complete"
  fi
  if [[ ! -f "${imgwheels}/.complete" ]]; then
    rm -rf "$imgwheels"
    "${venv}/bin/pip" download --quiet --require-hashes --no-deps --only-binary=:all: \
      --platform "manylinux2014_${pyarch}" --python-version 3.11 --implementation cp --abi cp311 \
      -d "$imgwheels" -r <(runtime_reqs) >&2
    touch "${imgwheels}/.complete"
  fi
  exec 8>&-

  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' EXIT
  (cd "$sdk" && "${venv}/bin/python" -m build --no-isolation --wheel --outdir "${work}/dist" . >&2)
  local rootfs="${work}/rootfs" site
  mkdir -p "$rootfs"
  for d in "$debs"/*.deb; do dpkg -x "$d" "$rootfs"; done
  site="${rootfs}/usr/local/lib/${image_python}/dist-packages"
  "${venv}/bin/pip" install --quiet --no-index --no-deps --no-compile --target "$site" \
    "${work}"/dist/*.whl "$imgwheels"/*.whl >&2
  # pip's console scripts name the interpreter that ran pip: write the image's own, one per entry
  # point of the package, on the PATH.
  rm -rf "${site}/bin"
  mkdir -p "${rootfs}/usr/local/bin"
  "${venv}/bin/python" - "$site" "${rootfs}/usr/local/bin" "/usr/bin/${image_python}" <<'PY'
import configparser, glob, os, sys
site, bindir, interp = sys.argv[1:]
for ep in glob.glob(os.path.join(site, "*.dist-info", "entry_points.txt")):
    cp = configparser.ConfigParser()
    cp.read(ep)
    if not cp.has_section("console_scripts"):
        continue
    for name, target in cp.items("console_scripts"):
        module, func = target.split(":")
        path = os.path.join(bindir, name)
        with open(path, "w") as f:
            f.write(f"#!{interp}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
        os.chmod(path, 0o755)
PY
  (cd "$root" && go run ./hack/imagebuild -tree "$rootfs" -arch "$arch" -out "$(dirname "$out")" \
    -user 65532:65532 -entrypoint "/usr/bin/${image_python}" \
    -env PYTHONDONTWRITEBYTECODE=1 -env PYTHONUNBUFFERED=1 \
    -label org.opencontainers.image.source=https://github.com/millrace-dev/millrace \
    -label org.opencontainers.image.licenses=Apache-2.0 \
    -label org.opencontainers.image.title=millrace-example-wordcount-py \
    "$(basename "$out" .tar)=${ref}")
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
  image)
    [[ $# -eq 2 ]] || { log "usage: hack/python.sh image OUT.tar REF"; exit 2; }
    ensure_venv
    image_build "$1" "$2"
    ;;
  *)
    log "unknown command $cmd (venv, build, test, image)"
    exit 2
    ;;
esac

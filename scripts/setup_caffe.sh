#!/usr/bin/env bash
# Build (once) and link (every clone) a CPU-only Caffe with Python layers.
#
#   bash scripts/setup_caffe.sh            # what `make caffe` runs
#
# 1. Debian packages Caffe compiles against, and libusb for the RealSense extra (apt-get, only
#    those missing).
# 2. The brocolli-caffe 9.0.2 source archive via `pip download`, checked against its sha256.
# 3. One fix to the source: `caffe train -weights W` fine-tunes from W, as in BVLC Caffe (this
#    source parsed the flag and ignored it; scripts/caffe-train-weights.patch).
#    A build with Caffe's own Makefile, cached outside the clone in
#    $DEEPMODEL_CACHE (default ~/.cache/deepmodel-caffe)/<archive sha256 prefix>-<config hash>,
#    so a second clone only links it. caffe_pb2.py is regenerated with the system protoc.
# 4. Links the build into .venv: a .pth file (pycaffe importable) and a
#    `caffe` command in .venv/bin that finds libcaffe and the layer modules.
#
# Environment: DEEPMODEL_CACHE (cache root), CAFFE_JOBS (make -j, default nproc+1),
#              CAFFE_GPU=1 (build with CUDA instead of CPU_ONLY; needs nvcc and CUDA_DIR).
set -euo pipefail

PROJECT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$PROJECT/.venv"
PY="$VENV/bin/python"
CAFFE_PKG="brocolli-caffe==9.0.2"
ARCHIVE_NAME="brocolli-caffe-9.0.2.tar.gz"
ARCHIVE_SHA256="c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a"
CACHE="${DEEPMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/deepmodel-caffe}"
APT_PACKAGES=(build-essential libboost-system-dev libboost-thread-dev libboost-filesystem-dev
  libboost-regex-dev libboost-python-dev libprotobuf-dev protobuf-compiler libgoogle-glog-dev
  libgflags-dev libhdf5-dev liblmdb-dev libopenblas-dev
  libusb-1.0-0)   # not Caffe's: the RealSense extra's wheel loads it (pyproject.toml, realsense)

say() { printf '[caffe] %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ -x "$PY" ] || die "$VENV is missing: run 'make venv' first"

# ---- 1. Debian packages -------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    die "Debian packages missing (run as root: apt-get install ${missing[*]})"
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_log="$(mktemp)"
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2
    die "apt-get install failed (log: $apt_log)"
  fi
  rm -f "$apt_log"
fi

# ---- 2. Source archive --------------------------------------------------------------------
MULTIARCH=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
PY_INCLUDE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
PY_LIBDIR=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
PY_VER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PY_SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
NP_INCLUDE=$("$PY" -c 'import numpy; print(numpy.get_include())')
NP_MAJOR=$("$PY" -c 'import numpy; print(numpy.__version__.split(".")[0])')

make_config() {
  if [ "${CAFFE_GPU:-0}" = 1 ]; then
    echo "CUDA_DIR := ${CUDA_DIR:-/usr/local/cuda}"
    echo "CUDA_ARCH := ${CUDA_ARCH:--gencode arch=compute_61,code=sm_61 -gencode arch=compute_75,code=sm_75 -gencode arch=compute_86,code=sm_86}"
  else
    echo "CPU_ONLY := 1"
  fi
  cat <<EOF
USE_OPENCV := 0
USE_LEVELDB := 0
USE_LMDB := 1
WITH_PYTHON_LAYER := 1
BLAS := open
BLAS_INCLUDE := /usr/include/$MULTIARCH/openblas-pthread
BLAS_LIB := /usr/lib/$MULTIARCH/openblas-pthread
PYTHON_LIBRARIES := boost_python${PY_VER/./} python$PY_VER
PYTHON_INCLUDE := $PY_INCLUDE $NP_INCLUDE
PYTHON_LIB := $PY_LIBDIR
INCLUDE_DIRS := \$(PYTHON_INCLUDE) /usr/local/include /usr/include/hdf5/serial
LIBRARY_DIRS := \$(PYTHON_LIB) /usr/local/lib /usr/lib /usr/lib/$MULTIARCH/hdf5/serial
LINKFLAGS := -Wl,-rpath,$PY_LIBDIR
Q ?= @
EOF
}
CONFIG=$(make_config)
# The key ignores where the venv is (numpy's headers live inside it): any clone with the same
# Python, numpy major version and settings reuses the build.
PATCH="$PROJECT/scripts/caffe-train-weights.patch"
[ -f "$PATCH" ] || die "$PATCH is missing (it belongs to the repository)"
CONFIG_HASH=$(printf '%s\nnumpy%s\n%s\n' "${CONFIG//$NP_INCLUDE/numpy-include}" "$NP_MAJOR" \
  "$(cat "$PATCH")" | sha256sum | cut -c1-8)
KEY="${ARCHIVE_SHA256:0:16}-$CONFIG_HASH"
HOME_DIR="$CACHE/$KEY"

if [ ! -f "$HOME_DIR/.complete" ]; then
  mkdir -p "$CACHE/downloads"
  archive="$CACHE/downloads/$ARCHIVE_NAME"
  if [ ! -f "$archive" ] || ! echo "$ARCHIVE_SHA256  $archive" | sha256sum -c --status; then
    say "downloading $CAFFE_PKG"
    rm -f "$archive"
    "$VENV/bin/pip" download -q --no-deps --no-binary :all: "$CAFFE_PKG" -d "$CACHE/downloads" \
      || die "pip download $CAFFE_PKG failed"
  fi
  echo "$ARCHIVE_SHA256  $archive" | sha256sum -c --status \
    || die "$archive does not match its pinned sha256; delete it and retry"

  # ---- 3. Build in a temporary folder, rename when complete -----------------------------
  tmp=$(mktemp -d "$CACHE/build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  tar -xzf "$archive" -C "$tmp"
  src="$tmp/brocolli-caffe-9.0.2"
  patch -d "$src" -p1 --quiet --forward <"$PATCH" || die "$PATCH does not apply to $ARCHIVE_NAME"
  printf '%s\n' "$CONFIG" >"$src/Makefile.config"
  log="$CACHE/build-$KEY.log"
  jobs=${CAFFE_JOBS:-$(( $(nproc) + 1 ))}
  # one progress step per compiled or linked file
  total=$(( $(find "$src/src/caffe" "$src/tools" "$src/python/caffe" -name '*.cpp' -not -path '*/test/*' | wc -l) + 12 ))
  say "building Caffe (make -j$jobs, log: $log); takes a few minutes on 2 cores"
  set +e
  # The archive ships a caffe.pb.h from an old protoc that shadows the generated one: drop it,
  # and generate the protobuf sources before the parallel build so no file races them.
  rm -f "$src/include/caffe/proto/caffe.pb.h"
  ( cd "$src" && make proto && make -j"$jobs" all tools pycaffe ) 2>&1 | tee "$log" \
    | grep --line-buffered -E '^(CXX|LD|AR|PROTOC)' \
    | "$PY" -m tqdm --total "$total" --unit file --desc "[caffe] build" --mininterval 5 --ncols 80 >/dev/null
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" != 0 ]; then
    echo "---- last lines of $log ----" >&2
    tail -n 25 "$log" >&2
    die "Caffe build failed (full log: $log)"
  fi
  ( cd "$src" && protoc --proto_path=src --python_out=python src/caffe/proto/caffe.proto ) \
    || die "protoc could not regenerate caffe_pb2.py"
  # this fork's Makefile builds into .temp_release (link 'temp'); pycaffe's rpath expects 'build'
  release=$(cd "$src" && ls -d .*_release | head -n 1)
  [ -n "$release" ] || die "no release build folder in $src"
  [ -e "$src/build" ] || ln -s "$release" "$src/build"
  # keep what is used at run time: libraries, tools, pycaffe, the proto definition
  rm -rf "$src/$release/src" "$src/$release/cuda" "$src/$release/test" "$src/.git" "$src/docs" \
    "$src/examples" "$src/models" "$src/data" "$src/matlab" "$src/distribute"
  touch "$src/.complete"
  rm -rf "$HOME_DIR"
  mv "$src" "$HOME_DIR"
  rm -rf "$tmp"
  trap - EXIT
  say "built and cached in $HOME_DIR"
else
  say "using cached build $HOME_DIR"
fi

# ---- 4. Link into the venv ----------------------------------------------------------------
# pycaffe importable in the venv (the project itself is installed there by `pip install -e .`
# as the one package `deepmodel`)
printf '%s\n' "$HOME_DIR/python" >"$PY_SITE/deepmodel_caffe.pth"
cat >"$VENV/bin/caffe" <<EOF
#!/bin/sh
# Generated by scripts/setup_caffe.sh: Caffe's command-line tool with this project's Python layers.
export LD_LIBRARY_PATH="$HOME_DIR/build/lib:$PY_LIBDIR\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PYTHONPATH="$HOME_DIR/python:$PY_SITE\${PYTHONPATH:+:\$PYTHONPATH}"
# Caffe's embedded Python finds its home through the first python3 on PATH: the venv's, so that
# the venv's packages and .pth files (the editable install of the package deepmodel, whose layers
# the nets name by dotted module) are there from any shell, activated or not
export PATH="$VENV/bin:\$PATH"
exec "$HOME_DIR/build/tools/caffe.bin" "\$@"
EOF
chmod +x "$VENV/bin/caffe"
"$PY" -c 'import caffe' 2>/dev/null || die "pycaffe does not import from $HOME_DIR/python (see $CACHE/build-$KEY.log)"
say "ready: pycaffe importable in .venv, 'caffe' on .venv/bin"

#!/usr/bin/env bash
# Build what a run on a machine without network carries along (run in the repo's venv on a machine with PyPI
# access, for `pip download`):
#   bench/offline/carry/triton.tar.xz  tritonserver of the nvidia-pytriton wheel, Python 3.12 stub only, laid out as
#                                     site-packages (pytriton/, nvidia_pytriton.libs/, dist-info)
#   bench/offline/carry/site.tar.xz    Python 3.12 (cp312, manylinux x86-64) installs of every distribution the
#                                     gateway, the load generator and Triton's Python models import, numpy 1.26 included
#   bench/offline/carry/cache.tar.xz   the built dev model (tokenizer + tiny weights), so that machine needs no torch
#   bench/offline/carry/tfe.tar.xz     only with TRITON_MIRROR and TRITON_CORE_MIRROR set: Triton's own OpenAI frontend
#                                     (bench/triton_frontend.sh carry; TFE_PYTHON, a CPython 3.12 with headers)
#   bench/offline/carry/redis.tar.xz   only where a redis-server is installed (Debian's): it and the two libraries of
#                                     it that a Ubuntu base lacks (liblzf, libjemalloc), for bench.limits_cost
# run.sh puts the site first (a venv's site-packages): the Triton stub then imports numpy 1.26, not the machine's 2.x.
# The carry and the repository's working tree travel together and must stay under the 64 MiB that such a run can
# bring along (bench/offline/travel_size.py); the script says what is left, and fails saying why when over.
set -euo pipefail
trap 'echo "prepare_carry.sh: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
OUT=bench/offline/carry
PLATFORMS=(--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)
# Not carried: hub downloads (never done), CLIs, torch's own dependencies (imported here only because torch is
# installed), image processing, optional codecs (zstandard too), sse-starlette (only bench.sse_cost), the
# OpenTelemetry SDK and exporters (FastAPI needs only the API), uvicorn's reload/websocket extras, transformers'
# optional hub kernels and sentencepiece (the dev tokenizer is a fast one). Each of these is imported only inside a
# try/except or by something not run.
SKIP_RE='^(hf[-_]xet|pygments|rich|markdown-it-py|mdurl|typer|shellingham|sympy|mpmath|pillow|brotli|'
SKIP_RE+='opentelemetry-(sdk|proto|exporter[-_a-z]*|semantic-conventions)|googleapis-common-protos|email-validator|'
SKIP_RE+='python-multipart|watchfiles|websockets|kernels|sentencepiece|'
SKIP_RE+='networkx|fsspec|zstandard|sse-starlette)=='

rm -rf "$OUT"
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export XZ_OPT="-9 -T0"

echo "== 1/5 tritonserver (nvidia-pytriton, Python 3.12 stub)"
SITE=$("$PY" -c 'import pathlib, pytriton; print(pathlib.Path(pytriton.__file__).parent.parent)')
T="$WORK/triton"
mkdir -p "$T/pytriton/tritonserver/python_backend_stubs" "$T/nvidia_pytriton.libs"
cp -a "$SITE/pytriton/tritonserver/bin" "$SITE/pytriton/tritonserver/backends" "$SITE/pytriton/tritonserver/caches" \
  "$T/pytriton/tritonserver/"
cp -a "$SITE/pytriton/tritonserver/python_backend_stubs/3.12" "$T/pytriton/tritonserver/python_backend_stubs/"
echo '"""Only the tritonserver files of nvidia-pytriton (carried for the benchmark); the client API is not here."""' \
  > "$T/pytriton/__init__.py"
# Every bundled library except libpython3.13 (tritonserver, the Python backend and the 3.12 stub do not link it).
find "$SITE/nvidia_pytriton.libs" -maxdepth 1 -type f ! -name 'libpython3*' -exec cp -a {} "$T/nvidia_pytriton.libs/" \;
DIST=$(ls -d "$SITE"/nvidia_pytriton-*.dist-info)
mkdir -p "$T/$(basename "$DIST")"
cp "$DIST/METADATA" "$DIST/top_level.txt" "$T/$(basename "$DIST")/"
find "$T" -name __pycache__ -prune -exec rm -rf {} +
tar -C "$T" -cJf "$OUT/triton.tar.xz" .

echo "== 2/5 site: cp312 wheels of what the processes import"
# needed_dists.py imports what the benchmark's processes import; it names what it cannot import (exit 2).
if ! PYTHONPATH=. "$PY" bench/offline/needed_dists.py > "$WORK/needed.txt" 2> "$WORK/needed.err"; then
  echo "prepare_carry.sh: bench/offline/needed_dists.py could not list the distributions to carry ($PY):" >&2
  tail -n 20 "$WORK/needed.err" >&2
  exit 1
fi
grep -Eiv "$SKIP_RE" "$WORK/needed.txt" > "$WORK/requirements.txt"
sed -i -E 's/^numpy==.*/numpy==1.26.4/' "$WORK/requirements.txt"
tr '\n' ' ' <"$WORK/requirements.txt"
echo
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  "${PLATFORMS[@]}" -r "$WORK/requirements.txt" -d "$WORK/wheels"
"$PY" -m pip install --quiet --no-deps --no-index --only-binary=:all: --python-version 3.12 --implementation cp \
  --abi cp312 "${PLATFORMS[@]}" --target "$WORK/site" "$WORK"/wheels/*.whl
find "$WORK/site" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$WORK/site/bin"
# Debug info of extension modules (ml_dtypes, uvloop and rapidjson ship theirs: ~6.5 MB of xz). Libraries that
# auditwheel vendored (*.libs/) are left as they are: patchelf rewrote them, and strip can break such files.
if command -v strip >/dev/null; then
  find "$WORK/site" -name '*.so' -not -path '*.libs/*' -exec strip --strip-debug {} +
else
  echo "note: no strip here (binutils): the extension modules keep their debug info"
fi
cp "$WORK/requirements.txt" "$WORK/site/CARRIED_REQUIREMENTS.txt"
tar -C "$WORK/site" -cJf "$OUT/site.tar.xz" .

echo "== 3/5 dev model cache"
MODEL=$(PYTHONPATH=. "$PY" -c 'from gateway.devstack import default_cache_root
from gateway.devstack.dev_model import ensure_dev_model
print(ensure_dev_model(default_cache_root()))')
tar -C "$(dirname "$MODEL")" -cJf "$OUT/cache.tar.xz" "$(basename "$MODEL")"

echo "== 4/5 Triton's OpenAI frontend (a peer of bench --peers), only with TRITON_MIRROR and TRITON_CORE_MIRROR set"
if [ -n "${TRITON_MIRROR:-}" ] && [ -n "${TRITON_CORE_MIRROR:-}" ]; then
  # Its sources, its own requirements and the tritonserver bindings compiled for CPython 3.12 ($TFE_PYTHON, with
  # headers): bench/triton_frontend.sh carry.
  TFE_WORK="$WORK/tfe" TFE_PROJECT_VENV="$("$PY" -c 'import sys; print(sys.prefix)')" \
    bash bench/triton_frontend.sh carry --out "$PWD/$OUT/tfe.tar.xz"
else
  echo "skipped: a run without it leaves tritonfe out with a note"
fi

echo "== 5/5 redis-server (bench.limits_cost), only where one is installed"
if REDIS=$(command -v redis-server); then
  R="$WORK/redis"
  mkdir -p "$R/bin" "$R/lib"
  cp "$(readlink -f "$REDIS")" "$R/bin/redis-server"
  # The machine's base image has libc, libssl and libsystemd; these two come from the redis-server package's own
  # dependencies.
  for lib in liblzf.so.1 libjemalloc.so.2; do
    cp "$(ldd "$REDIS" | awk -v lib="$lib" '$1 == lib { print $3 }')" "$R/lib/$lib"
  done
  strip --strip-debug "$R/bin/redis-server" "$R"/lib/* 2>/dev/null || true
  tar -C "$R" -cJf "$OUT/redis.tar.xz" .
else
  echo "skipped: no redis-server here (apt-get install redis-server); bench.limits_cost cannot run there"
fi

ls -l "$OUT"
# What travels is the carry and the working tree together (tracked and untracked-not-ignored files).
PYTHONPATH=. "$PY" bench/offline/travel_size.py "$OUT"
echo "carry: bench/offline/carry   (run: bash bench/offline/run.sh)"

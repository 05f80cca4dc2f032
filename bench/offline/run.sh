#!/usr/bin/env bash
# A benchmark run on a machine without network (CPython 3.12 with a shared libpython; from the repo root, with
# bench/offline/carry brought along, see prepare_carry.sh): unpack the carried Triton, Python site and dev model,
# then run the quick sweep with 1 and 4 gateway workers. Results (and logs) go to $OUT, the folder that comes back.
#   OUT=/some/dir bash bench/offline/run.sh [extra bench.run arguments]
#   OUT=/some/dir bash bench/offline/run.sh --module bench.grpc_call_cost [its arguments]   (another bench module)
set -euo pipefail
cd "$(dirname "$0")/../.."
CARRY=bench/offline/carry
OUT=${OUT:?set OUT to the folder that comes back}
PY=${PYTHON:-$(command -v python3.12 || command -v python3)}
WORK=$(mktemp -d /tmp/bench-device.XXXXXX)

"$PY" - <<'EOF'
import sys, sysconfig
assert sys.version_info[:2] == (3, 12), f"the carried site is for CPython 3.12, this is {sys.version}"
assert sysconfig.get_config_var("Py_ENABLE_SHARED"), "the Triton stub needs a Python built with a shared libpython"
EOF

# A venv whose site-packages is the carried site: it comes before the image's site-packages, so numpy 1.26 (and
# the other carried versions) win over the image's numpy 2.x in every process. That includes the Triton Python
# backend stubs: they ignore PYTHONPATH and find site-packages through the first python on PATH, which
# gateway.devstack sets to this venv's bin. The image's packages stay visible behind it (--system-site-packages).
"$PY" -m venv --system-site-packages --without-pip "$WORK/venv"
PY="$WORK/venv/bin/python"
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$SITE" "$WORK/cache" "$OUT"
tar -C "$SITE" -xJf "$CARRY/site.tar.xz"
tar -C "$SITE" -xJf "$CARRY/triton.tar.xz"
tar -C "$WORK/cache" -xJf "$CARRY/cache.tar.xz"
export PATH="$WORK/venv/bin:$PATH"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the repo root: `gateway` and `bench`
export GATEWAY_CACHE_DIR="$WORK/cache"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1

{
  echo "python: $("$PY" -VV)"
  "$PY" -c 'import numpy, grpc, transformers; print("numpy", numpy.__version__, "grpc", grpc.__version__, "transformers", transformers.__version__)'
  nproc
  nvidia-smi -L 2>/dev/null || true
} | tee "$OUT/environment.txt"

workers_flag=$("$PY" -m gateway serve --help | grep -c -- "--workers" || true)
WORKERS=1,4
if [ "$workers_flag" = "0" ]; then
  echo "note: the gateway has no --workers flag yet; the 4-worker runs are skipped" | tee -a "$OUT/environment.txt"
fi

status=0
if [ "${1:-}" = "--module" ]; then
  module=$2
  shift 2
  "$PY" -m "$module" "$@" 2>&1 | tee "$OUT/$module.log" || status=$?
  rm -rf "$WORK"
  exit "$status"
fi
"$PY" -m bench.run --sweep quick --frontends direct,gateway --workers "$WORKERS" --streams-per-loadgen 256 \
  --out "$OUT/quick" "$@" \
  2>&1 | tee "$OUT/bench.log" || status=$?
# Logs of Triton, the gateways and the load generators (small text files only).
find bench/results/tmp -name '*.log' -size -2M -exec cp --parents {} "$OUT/" \; 2>/dev/null || true
rm -rf "$WORK"
exit "$status"

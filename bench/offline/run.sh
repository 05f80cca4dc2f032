#!/usr/bin/env bash
# shellcheck disable=SC2317  # check_out, pack and finish run from the EXIT trap
# A benchmark run on a machine without network (CPython 3.12 with a shared libpython; from the repo root, with
# bench/offline/carry brought along, see prepare_carry.sh): unpack the carried Triton, Python site and dev model,
# then run the quick sweep with 1 and 4 gateway workers. Results go to $OUT, the folder that comes back.
#   OUT=/some/dir [NAME=results-folder-name] bash bench/offline/run.sh [extra bench.run arguments]
#   OUT=/some/dir bash bench/offline/run.sh --module bench.grpc_call_cost [its arguments]   (another bench module)
# A device run returns at most 8 files, 2 folders deep, so $OUT ends up holding summary.md, runs.csv, plot.png,
# meta.json, environment.txt, bench.log and $NAME.tar.xz: the whole results folder (runs.jsonl included) with the
# logs of Triton, the front-ends and the load generators. That happens on exit, also after a `timeout` (SIGTERM);
# a run killed outright leaves $OUT/$NAME/ as bench.run wrote it (meta.json and runs.jsonl so far).
set -euo pipefail
cd "$(dirname "$0")/../.."
CARRY=bench/offline/carry
OUT=${OUT:?set OUT to the folder that comes back}
NAME=${NAME:-run-$(date -u +%Y%m%d-%H%M%S)}
PY=${PYTHON:-$(command -v python3.12 || command -v python3)}
RESULTS="$OUT/$NAME" # bench.run's results folder while it runs
MAX_FILES=8

for part in site triton cache; do
  if [ ! -f "$CARRY/$part.tar.xz" ]; then
    echo "run.sh: $CARRY/$part.tar.xz is missing: build the carry (bash bench/offline/prepare_carry.sh) and bring" \
      "bench/offline/carry along" >&2
    exit 1
  fi
done

"$PY" - <<'EOF'
import sys, sysconfig
assert sys.version_info[:2] == (3, 12), f"the carried site is for CPython 3.12, this is {sys.version}"
assert sysconfig.get_config_var("Py_ENABLE_SHARED"), "the Triton stub needs a Python built with a shared libpython"
EOF
WORK=$(mktemp -d /tmp/bench-device.XXXXXX)
mkdir -p "$OUT"

# Says what in $OUT a device run would not return (more than MAX_FILES files, files over 16 MiB, deeper than two
# folders, names with other characters than letters, digits, '.', '_' and '-').
check_out() {
  local count problems
  count=$(find "$OUT" -type f | wc -l)
  problems=$(
    find "$OUT" -mindepth 4
    find "$OUT" -type f -size +16M
    find "$OUT" -mindepth 1 -name '*[!A-Za-z0-9._-]*'
  )
  if [ "$count" -le "$MAX_FILES" ] && [ -z "$problems" ]; then
    return 0
  fi
  echo "run.sh: \$OUT holds what a device run does not return ($count files, at most $MAX_FILES):" >&2
  find "$OUT" -type f >&2
  [ -z "$problems" ] || printf 'too deep, too big or badly named:\n%s\n' "$problems" >&2
  return 1
}

# summary.md, runs.csv, plot.png and meta.json to the top of $OUT; the whole results folder, environment.txt,
# bench.log and the logs (the last 2 MB of each) into $OUT/$NAME.tar.xz.
pack() {
  local stage="$WORK/pack/$NAME" logs="bench/results/tmp/$NAME" log
  mkdir -p "$stage"
  [ ! -d "$RESULTS" ] || cp -a "$RESULTS/." "$stage/"
  cp "$OUT/environment.txt" "$OUT/bench.log" "$stage/" 2>/dev/null || true
  if [ -d "$logs" ]; then
    while IFS= read -r -d '' log; do
      mkdir -p "$stage/logs/$(dirname "$log")"
      tail -c 2000000 "$logs/$log" >"$stage/logs/$log"
    done < <(cd "$logs" && find . -name '*.log' -type f -print0)
  fi
  tar -C "$WORK/pack" -cJf "$OUT/$NAME.tar.xz" "$NAME"
  for file in summary.md runs.csv plot.png meta.json; do
    [ ! -f "$RESULTS/$file" ] || mv "$RESULTS/$file" "$OUT/$file"
  done
  rm -rf "$RESULTS"
}

status=0
module=""
finish() {
  [ -n "$module" ] || pack || status=$?
  check_out || status=$((status ? status : 1))
  rm -rf "$WORK"
  exit "$status"
}
trap finish EXIT
trap 'status=143; exit 143' TERM INT

# A venv whose site-packages is the carried site: it comes before the image's site-packages, so numpy 1.26 (and
# the other carried versions) win over the image's numpy 2.x in every process. That includes the Triton Python
# backend stubs: they ignore PYTHONPATH and find site-packages through the first python on PATH, which
# gateway.devstack sets to this venv's bin. The image's packages stay visible behind it (--system-site-packages).
"$PY" -m venv --system-site-packages --without-pip "$WORK/venv"
PY="$WORK/venv/bin/python"
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$SITE" "$WORK/cache"
tar -C "$SITE" -xJf "$CARRY/site.tar.xz"
tar -C "$SITE" -xJf "$CARRY/triton.tar.xz"
tar -C "$WORK/cache" -xJf "$CARRY/cache.tar.xz"
export PATH="$WORK/venv/bin:$PATH"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" # the repo root: `gateway` and `bench`
export GATEWAY_CACHE_DIR="$WORK/cache"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
# Triton's own OpenAI frontend (`--peers`, or `tritonfe` in --frontends), when the carry has it (prepare_carry.sh
# with TRITON_MIRROR and TRITON_CORE_MIRROR set): its finished set-up, laid out where bench/tritonfe.py looks.
if [ -f "$CARRY/tfe.tar.xz" ]; then
  export TFE_WORK="$WORK/tfe"
  "$PY" -m bench.tritonfe install-carried "$CARRY/tfe.tar.xz"
fi
# redis-server (bench.limits_cost), when the carry has it: on PATH, with its two carried libraries.
if [ -f "$CARRY/redis.tar.xz" ]; then
  mkdir -p "$WORK/redis"
  tar -C "$WORK/redis" -xJf "$CARRY/redis.tar.xz"
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/redis/lib exec %s/redis/bin/redis-server "$@"\n' "$WORK" "$WORK" \
    >"$WORK/venv/bin/redis-server"
  chmod +x "$WORK/venv/bin/redis-server"
fi

{
  echo "python: $("$PY" -VV)"
  "$PY" -c 'import numpy, grpc, transformers; print("numpy", numpy.__version__, "grpc", grpc.__version__, "transformers", transformers.__version__)'
  nproc
  nvidia-smi -L 2>/dev/null || true
} | tee "$OUT/environment.txt"

if [ "${1:-}" = "--module" ]; then
  module=$2
  shift 2
  "$PY" -m "$module" "$@" 2>&1 | tee "$OUT/$module.log" || status=$?
  exit "$status"
fi

WORKERS=1,4
serve_help=$("$PY" -m gateway serve --help)
if [[ "$serve_help" != *--workers* ]]; then
  echo "note: the gateway has no --workers flag yet; the 4-worker runs are skipped" | tee -a "$OUT/environment.txt"
fi
"$PY" -m bench.run --sweep quick --frontends direct,gateway --workers "$WORKERS" --streams-per-loadgen 256 \
  --out "$RESULTS" "$@" 2>&1 | tee "$OUT/bench.log" || status=$?
exit "$status"

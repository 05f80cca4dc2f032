#!/bin/bash
# bench/'s `tritonfe` front-end runs `setup` here, then starts the frontend itself (bench/tritonfe.py) on a
# repository rendered with the bench's synthetic-engine settings; `start`/`stop` are for manual use.
#
# Runs Triton's own OpenAI frontend (triton-inference-server/server, python/openai/openai_frontend/main.py, which
# runs Triton in-process through the `tritonserver` Python bindings) on this CPU-only machine, on the project's dev
# model repository (triton_repo/dev rendered like gateway.devstack renders it), as a live peer of the gateway.
#
# What it sets up, from nothing, under $TFE_WORK (kept between runs; only missing parts are redone):
#   src/     upstream sources exported from git mirrors (nothing upstream is kept in this repository):
#            server @ $TRITON_REF: python/openai; core @ $TRITON_CORE_REF (r24.10): python/tritonserver + tritonserver.h
#   venv/    a venv of the project venv's base Python with the frontend's requirements.txt (numpy<2), the
#            tritonserver bindings compiled here with g++ against nvidia-pytriton's libtritonserver (Triton 2.51,
#            C API 1.34) and a .pth that adds the project venv's site-packages (transformers for the tokenizer)
#   run/     the rendered model repository, tritonserver log, pid file
# It runs main.py through bench/tritonfe_launch.py, which fills in the in-process server's options.
# The Python backend stubs run in the project venv (its bin first on PATH), exactly as in the gateway's dev stack.
#
# Usage:  bench/triton_frontend.sh [start] [--port N] [--engine hf|synthetic] [--foreground] [-- main.py args...]
#         bench/triton_frontend.sh stop      (SIGTERM to the process started by `start`, then cleans /dev/shm)
#         bench/triton_frontend.sh setup     (only set up; start nothing)
#         bench/triton_frontend.sh carry --out FILE   (pack the set-up for a machine without network, see below)
# Env:
#   TFE_WORK            work folder (default $TMPDIR/triton-openai-frontend)
#   TFE_PROJECT         the gateway checkout (default: the one holding this script); TFE_PROJECT_VENV (default $TFE_PROJECT/.venv,
#                       with '.[devstack]' installed: nvidia-pytriton, torch, transformers, numpy<2)
#   TRITON_MIRROR       git dir of triton-inference-server/server (required;
#                       a clone of github.com/triton-inference-server/server)
#   TRITON_CORE_MIRROR  git dir of triton-inference-server/core (required;
#                       a clone of github.com/triton-inference-server/core)
#   TRITON_REF          server commit of the frontend (default e1db8a6..., 2026-08-19, main tracking 2.73.0,
#                       ); TRITON_CORE_REF (default r24.10 = bfec7c6..., Triton 2.51)
#   TFE_EXCLUDE_INPUT   true|false: the repository's default exclude_input_in_output (default true; the gateway sends
#                       true on every request, Triton's frontend never sends it for chat, see README)
#   TFE_READY_TIMEOUT   seconds to wait for the frontend (default 180)
#   TFE_PYTHON          for `carry`: the CPython 3.12 (with headers) to compile the bindings for (default python3.12)
# Prints, once it answers:  URL=http://127.0.0.1:PORT/v1  MODEL=ensemble  PID=...  LOG=...
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="${TFE_WORK:-${TMPDIR:-/tmp}/triton-openai-frontend}"
project="${TFE_PROJECT:-$(dirname "$here")}"
pvenv="${TFE_PROJECT_VENV:-$project/.venv}"
server_git="${TRITON_MIRROR:?set TRITON_MIRROR to a git dir of triton-inference-server/server}"
core_git="${TRITON_CORE_MIRROR:?set TRITON_CORE_MIRROR to a git dir of triton-inference-server/core}"
server_ref="${TRITON_REF:-e1db8a603d863b1317ee859bdeea2be19959462e}"
core_ref="${TRITON_CORE_REF:-bfec7c61dc0939433f64f14e89b1973073eac8ba}"
exclude_input="${TFE_EXCLUDE_INPUT:-true}"
ready_timeout="${TFE_READY_TIMEOUT:-180}"

cmd=start
case "${1:-}" in start|stop|setup|carry) cmd="$1"; shift ;; esac
port=9300
engine=hf
foreground=0
extra=()
out=
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --engine) engine="$2"; shift 2 ;;
    --foreground) foreground=1; shift ;;
    --out) out="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown argument: $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
case "$engine" in hf|synthetic) ;; *) echo "--engine must be hf or synthetic" >&2; exit 2 ;; esac

log() { echo "[triton-frontend] $*" >&2; }
die() { echo "[triton-frontend] ERROR: $*" >&2; exit 1; }

pidfile="$work/run/frontend.pid"
shm_prefix="tfe_$(echo -n "$work" | md5sum | cut -c1-8)_"

if [ "$cmd" = stop ]; then
  [ -f "$pidfile" ] || { log "no pid file ($pidfile): nothing to stop"; exit 0; }
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    # started with setsid: the pid is its process group; the stubs are in it too
    kill -0 "$pid" 2>/dev/null && { log "still running after 20 s: SIGKILL to group $pid"; kill -KILL -- "-$pid" || true; }
  fi
  rm -f "$pidfile" /dev/shm/"$shm_prefix"*
  log "stopped $pid"
  exit 0
fi

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  die "already running (pid $(cat "$pidfile")); run $0 stop first"
fi

# ---- prerequisites -----------------------------------------------------------------------------------------------
[ -x "$pvenv/bin/python" ] || die "no project venv at $pvenv (install the gateway with pip install -e '.[devstack]')"
command -v g++ >/dev/null || die "g++ is needed to compile the tritonserver bindings (apt-get install g++)"
command -v curl >/dev/null || die "curl is needed"
read -r base_python libpython_dir pytriton_libs < <("$pvenv/bin/python" - <<'EOF'
import pathlib, sys, sysconfig
import pytriton  # noqa: F401  (nvidia-pytriton: the Triton 2.51 binary, libtritonserver, Python backend + stubs)
if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
    sys.exit("this Python has no shared libpython; the Python backend stub needs one")
libs = pathlib.Path(pytriton.__file__).resolve().parents[1] / "nvidia_pytriton.libs"
print(sys._base_executable, sysconfig.get_config_var("LIBDIR"), libs)
EOF
) || die "the project venv lacks nvidia-pytriton (pip install -e '.[devstack]') or a shared libpython"
libtriton="$(ls "$pytriton_libs"/libtritonserver-*.so 2>/dev/null | head -1)"
[ -n "$libtriton" ] || die "no libtritonserver-*.so in $pytriton_libs"
mkdir -p "$work/src" "$work/run"

# ---- upstream sources ----------------------------------------------------------------------------------------------
frontend="$work/src/openai@${server_ref:0:12}"
core="$work/src/core@${core_ref:0:12}"
if [ ! -f "$frontend/openai_frontend/main.py" ]; then
  git --git-dir="$server_git" cat-file -e "$server_ref^{commit}" 2>/dev/null \
    || die "no commit $server_ref in TRITON_MIRROR=$server_git (clone github.com/triton-inference-server/server)"
  rm -rf "$frontend.tmp" && mkdir -p "$frontend.tmp"
  git --git-dir="$server_git" archive "$server_ref:python/openai" openai_frontend requirements.txt | tar -x -C "$frontend.tmp"
  git --git-dir="$server_git" show "$server_ref:LICENSE" > "$frontend.tmp/LICENSE"
  mv "$frontend.tmp" "$frontend"
fi
if [ ! -f "$core/include/triton/core/tritonserver.h" ]; then
  git --git-dir="$core_git" cat-file -e "$core_ref^{commit}" 2>/dev/null \
    || die "no commit $core_ref in TRITON_CORE_MIRROR=$core_git (a clone of github.com/triton-inference-server/core)"
  rm -rf "$core.tmp" && mkdir -p "$core.tmp"
  git --git-dir="$core_git" archive "$core_ref" python/tritonserver include/triton/core/tritonserver.h | tar -x -C "$core.tmp"
  mv "$core.tmp" "$core"
fi

# build_bindings PYTHON PKG: the r24.10 `tritonserver` package at PKG, its pybind11 bindings compiled for PYTHON (which
# has pybind11 2.10.4) against nvidia-pytriton's libtritonserver (Triton 2.51, C API 1.34).
build_bindings() {
  local python="$1" pkg="$2" ext
  ext="$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
  cp -r "$core/python/tritonserver" "$pkg"
  rm -f "$pkg/CMakeLists.txt" "$pkg/_c/tritonserver_pybind.cc"
  ln -sf "$libtriton" "$pkg/_c/libtritonserver.so"  # the bindings' NEEDED name; RUNPATH is $ORIGIN
  log "compiling the tritonserver bindings (r24.10 tritonserver_pybind.cc, about 15 s)"
  # shellcheck disable=SC2046
  nice g++ -O1 -shared -fPIC -std=c++17 -fvisibility=hidden $("$python" -m pybind11 --includes) \
    -I"$core/include" "$core/python/tritonserver/_c/tritonserver_pybind.cc" \
    -L"$pkg/_c" -ltritonserver -Wl,-rpath,'$ORIGIN' -o "$pkg/_c/triton_bindings$ext"
  cat >> "$pkg/__init__.py" <<'EOF'

# Added by bench/triton_frontend.sh: later frontends name this class at the top level; r24.10 did not export it.
from tritonserver._api._response import InferenceResponse as InferenceResponse  # noqa: E402

__version__ = "2.51.0"
EOF
}

# ---- carry: the set-up packed for a machine without network ---------------------------------------------------------
# `carry --out FILE` (bench/offline/prepare_carry.sh runs it): FILE holds openai_frontend/, LICENSE and site/: cp312
# installs of what the frontend imports at this ref and the carried site lacks or has at other versions, and the
# bindings compiled for $TFE_PYTHON (a CPython 3.12 with its headers). requirements.txt also pins scipy, which the
# frontend never imports: left out. `python -m bench.tritonfe install-carried FILE` lays it out on that machine.
CARRIED_PINS=(fastapi==0.121.2 starlette==0.49.3 httpx==0.27.2 openai==1.107.3 partial-json-parser==0.2.1.1.post7
              jiter==0.19.0 distro==1.9.0)
if [ "$cmd" = carry ]; then
  [ -n "$out" ] || die "carry needs --out FILE"
  py312="${TFE_PYTHON:-python3.12}"
  "$py312" -c 'import pathlib, sys, sysconfig
assert sys.version_info[:2] == (3, 12)
assert (pathlib.Path(sysconfig.get_paths()["include"]) / "Python.h").exists()' \
    || die "TFE_PYTHON=$py312 must be a CPython 3.12 with its headers (the bindings are compiled for it)"
  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' EXIT
  "$py312" -m venv "$stage/build"
  "$stage/build/bin/pip" install -q "pybind11==2.10.4" 2>&1 | grep -v "^WARNING: Location" >&2 || true
  "$stage/build/bin/pip" install -q --no-deps --only-binary=:all: --target "$stage/pack/site" "${CARRIED_PINS[@]}" \
    2>&1 | grep -v "^WARNING: Location" >&2 || true
  for pin in "${CARRIED_PINS[@]}"; do
    dist="${pin%%==*}"
    [ -d "$stage/pack/site/${dist//-/_}-${pin##*==}.dist-info" ] || die "pip did not install $pin"
  done
  build_bindings "$stage/build/bin/python" "$stage/pack/site/tritonserver"
  rm "$stage/pack/site/tritonserver/_c/libtritonserver.so"  # linked again there, to that machine's copy
  strip --strip-unneeded "$stage/pack/site/tritonserver/_c/"triton_bindings*.so
  rm -rf "$stage/pack/site/bin"
  find "$stage/pack" -name __pycache__ -prune -exec rm -rf {} +
  cp -r "$frontend/openai_frontend" "$frontend/LICENSE" "$stage/pack/"
  mkdir -p "$(dirname "$out")"
  XZ_OPT="-9 -T0" tar -C "$stage/pack" -cJf "$out" .
  log "packed $out ($(du -h "$out" | cut -f1))"
  exit 0
fi

# ---- venv: frontend requirements + bindings ------------------------------------------------------------------------
venv="$work/venv"
stamp="$venv/.tfe-${server_ref:0:12}-${core_ref:0:12}"
if [ ! -f "$stamp" ]; then
  log "creating $venv (frontend requirements, tritonserver bindings)"
  rm -rf "$venv"
  "$base_python" -m venv "$venv"
  echo "numpy<2" > "$work/constraints.txt"  # the stubs and the bindings need numpy 1.x (DESIGN.md §3)
  "$venv/bin/pip" install -q -c "$work/constraints.txt" "numpy<2" uvicorn "pybind11==2.10.4" \
    -r "$frontend/requirements.txt" 2>&1 | grep -v "^WARNING: Location" >&2 || true
  "$venv/bin/python" -c "import fastapi, openai, numpy, uvicorn, pybind11" || die "pip install into $venv failed"
  sp="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  build_bindings "$venv/bin/python" "$sp/tritonserver"
  # transformers (the frontend's tokenizer) and friends come from the project venv, after the venv's own packages
  "$pvenv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$sp/zz_project_venv.pth"
  touch "$stamp"
fi

export LD_LIBRARY_PATH="$pytriton_libs:$libpython_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$venv/bin/python" -c "import tritonserver, transformers" || die "the tritonserver bindings do not import (see above)"

# ---- dev model, rendered repository, Python-backend copy (the project's own code) -----------------------------------
read -r model_dir backend_root < <("$pvenv/bin/python" - "$work/run/model_repository" "$engine" "$exclude_input" <<'EOF'
import dataclasses, sys
from pathlib import Path
from gateway.devstack.dev_model import ensure_dev_model
from gateway.devstack.dev_stack import DevStackOptions, default_cache_root
from gateway.devstack.repository import render_model_repository, triton_repo_root
from gateway.devstack.triton_server import prepare_backends
cache = default_cache_root()
model_dir = ensure_dev_model(cache)
options = DevStackOptions(engine=sys.argv[2], exclude_input_in_output=sys.argv[3] == "true")
render_model_repository(triton_repo_root() / "dev", Path(sys.argv[1]), options.placeholder_values(model_dir))
print(model_dir, prepare_backends(cache))
EOF
) || die "could not build the dev model / render triton_repo/dev with $pvenv"


[ "$cmd" = setup ] && { log "set up in $work (frontend $frontend, model $model_dir)"; exit 0; }

if curl -s -o /dev/null "http://127.0.0.1:$port/"; then die "port $port is in use"; fi

export PATH="$pvenv/bin:$PATH"  # the stubs' embedded interpreter finds site-packages through the first python
export TFE_BACKEND_ROOT="$backend_root" TFE_SHM_PREFIX="$shm_prefix" PYTHONUNBUFFERED=1
args=(--model-repository "$work/run/model_repository" --tokenizer "$model_dir"
      --host 127.0.0.1 --openai-port "$port" "${extra[@]}")
run=("$venv/bin/python" "$here/tritonfe_launch.py" "$frontend/openai_frontend" -- "${args[@]}")
if [ "$foreground" = 1 ]; then
  echo "URL=http://127.0.0.1:$port/v1 MODEL=ensemble (also tensorrt_llm_bls)"
  exec "${run[@]}"
fi
logfile="$work/run/frontend.log"
setsid "${run[@]}" > "$logfile" 2>&1 < /dev/null &
pid=$!
echo "$pid" > "$pidfile"
deadline=$((SECONDS + ready_timeout))
until curl -sf "http://127.0.0.1:$port/health/ready" > /dev/null 2>&1 \
   && curl -sf "http://127.0.0.1:$port/v1/models" 2>/dev/null | grep -q '"ensemble"'; do
  if ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$pidfile" /dev/shm/"$shm_prefix"*
    tail -n 40 "$logfile" >&2
    die "the frontend exited during start-up (log: $logfile)"
  fi
  [ "$SECONDS" -lt "$deadline" ] || { tail -n 40 "$logfile" >&2; "$0" stop; die "not ready after $ready_timeout s"; }
  sleep 0.5
done
echo "URL=http://127.0.0.1:$port/v1 MODEL=ensemble PID=$pid LOG=$logfile"
echo "(models: $(curl -s "http://127.0.0.1:$port/v1/models" | "$venv/bin/python" -c 'import json,sys; print(" ".join(m["id"] for m in json.load(sys.stdin)["data"]))'); stop: $0 stop)"

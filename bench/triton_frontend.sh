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
# The Python backend stubs run in the project venv (its bin first on PATH), exactly as in the gateway's dev stack.
#
# Usage:  run_triton_frontend.sh [start] [--port N] [--engine hf|synthetic] [--foreground] [-- main.py args...]
#         run_triton_frontend.sh stop      (SIGTERM to the process started by `start`, then cleans /dev/shm)
#         run_triton_frontend.sh setup     (only set up; start nothing)
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
case "${1:-}" in start|stop|setup) cmd="$1"; shift ;; esac
port=9300
engine=hf
foreground=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --engine) engine="$2"; shift 2 ;;
    --foreground) foreground=1; shift ;;
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
  ext="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
  pkg="$sp/tritonserver"
  cp -r "$core/python/tritonserver" "$pkg"
  rm -f "$pkg/CMakeLists.txt" "$pkg/_c/tritonserver_pybind.cc"
  ln -sf "$libtriton" "$pkg/_c/libtritonserver.so"  # the bindings' NEEDED name; RUNPATH is $ORIGIN
  log "compiling the tritonserver bindings (r24.10 tritonserver_pybind.cc, about 15 s)"
  # shellcheck disable=SC2046
  nice g++ -O1 -shared -fPIC -std=c++17 -fvisibility=hidden $("$venv/bin/python" -m pybind11 --includes) \
    -I"$core/include" "$core/python/tritonserver/_c/tritonserver_pybind.cc" \
    -L"$pkg/_c" -ltritonserver -Wl,-rpath,'$ORIGIN' -o "$pkg/_c/triton_bindings$ext"
  cat >> "$pkg/__init__.py" <<'EOF'

# Added by run_triton_frontend.sh: later frontends name this class at the top level; r24.10 did not export it.
from tritonserver._api._response import InferenceResponse as InferenceResponse  # noqa: E402

__version__ = "2.51.0"
EOF
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

# ---- launcher: fills in the in-process server options main.py leaves at container defaults -------------------------
cat > "$work/launch_frontend.py" <<'EOF'
"""Run openai_frontend/main.py with the in-process Triton options this CPU dev set-up needs (no edit of the frontend).

main.py calls tritonserver.Server(model_repository=..., ...) and leaves the rest at Triton's container defaults
(/opt/tritonserver/backends, auto-complete on). Filled in here: the backend and cache folders of the nvidia-pytriton
copy, the Python backend's shm settings and strict model config (= --disable-auto-complete-config), as in
gateway.devstack, and a short exit timeout. Usage: python launch_frontend.py FRONTEND_DIR -- <main.py arguments>
"""

import os
import sys

frontend_dir = sys.argv[1]
sys.argv = [os.path.join(frontend_dir, "main.py"), *sys.argv[3:]]
sys.path.insert(0, frontend_dir)

import tritonserver  # noqa: E402

_original_init = tritonserver.Server.__init__


def _init(self, options=None, **kwargs):
    if options is None:
        root = os.environ["TFE_BACKEND_ROOT"]
        kwargs.setdefault("backend_directory", os.path.join(root, "backends"))
        kwargs.setdefault("cache_directory", os.path.join(root, "caches"))
        kwargs.setdefault("strict_model_config", True)
        kwargs.setdefault("exit_timeout", 5)
        python = {"shm-default-byte-size": "4194304", "shm-region-prefix-name": os.environ["TFE_SHM_PREFIX"]}
        kwargs.setdefault("backend_configuration", {"python": python})
    _original_init(self, options, **kwargs)


tritonserver.Server.__init__ = _init

import main  # noqa: E402  (openai_frontend/main.py)

main.main()
EOF

[ "$cmd" = setup ] && { log "set up in $work (frontend $frontend, model $model_dir)"; exit 0; }

if curl -s -o /dev/null "http://127.0.0.1:$port/"; then die "port $port is in use"; fi

export PATH="$pvenv/bin:$PATH"  # the stubs' embedded interpreter finds site-packages through the first python
export TFE_BACKEND_ROOT="$backend_root" TFE_SHM_PREFIX="$shm_prefix" PYTHONUNBUFFERED=1
args=(--model-repository "$work/run/model_repository" --tokenizer "$model_dir"
      --host 127.0.0.1 --openai-port "$port" "${extra[@]}")
run=("$venv/bin/python" "$work/launch_frontend.py" "$frontend/openai_frontend" -- "${args[@]}")
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

"""Run openai_frontend/main.py with the in-process Triton options this CPU set-up needs (no edit of the frontend).

main.py calls tritonserver.Server(model_repository=..., ...) and leaves the rest at Triton's container defaults
(/opt/tritonserver/backends, auto-complete on). Filled in here: the backend and cache folders of the nvidia-pytriton
copy, the Python backend's shm settings and strict model config (= --disable-auto-complete-config), as in
gateway.devstack, and a short exit timeout. It runs in the frontend's own venv (bench/triton_frontend.sh sets it up).
Usage: python bench/tritonfe_launch.py FRONTEND_DIR -- <main.py arguments>
"""

import os
import sys
from typing import Any

frontend_dir = sys.argv[1]
sys.argv = [os.path.join(frontend_dir, "main.py"), *sys.argv[3:]]
sys.path.insert(0, frontend_dir)

import tritonserver  # noqa: E402

_original_init = tritonserver.Server.__init__


def _init(self: Any, options: Any = None, **kwargs: Any) -> None:
    if options is None:
        root = os.environ["TFE_BACKEND_ROOT"]
        kwargs.setdefault("backend_directory", os.path.join(root, "backends"))
        kwargs.setdefault("cache_directory", os.path.join(root, "caches"))
        kwargs.setdefault("strict_model_config", True)
        kwargs.setdefault("exit_timeout", 5)
        python = {"shm-default-byte-size": "4194304", "shm-region-prefix-name": os.environ["TFE_SHM_PREFIX"]}
        kwargs.setdefault("backend_configuration", {"python": python})
    _original_init(self, options, **kwargs)


tritonserver.Server.__init__ = _init  # type: ignore[method-assign]

import main  # noqa: E402  (openai_frontend/main.py)

main.main()

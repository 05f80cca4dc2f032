"""The synthetic Triton every front-end shares, restartable after a crash (its log is kept)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import psutil

from bench.procs import Placement, ProcessTree, affinity

logger = logging.getLogger("bench")


class TritonStack:
    """tritonserver on `triton_repo/dev` with the synthetic engine, pinned to the Triton CPUs."""

    def __init__(
        self,
        placement: Placement,
        work_dir: Path,
        ttft_ms: float,
        itl_ms: float,
        max_active: int,
        engine_instances: int = 1,
        tokens_per_response: int = 1,
    ) -> None:
        self.placement = placement
        self.work_dir = work_dir
        self.ttft_ms = ttft_ms
        self.itl_ms = itl_ms
        self.max_active = max_active
        self.engine_instances = engine_instances
        self.tokens_per_response = tokens_per_response
        self.server: Any = None
        self.crashes: list[str] = []  # tail of the log of each crash
        self.starts = 0
        self._exit: contextlib.ExitStack | None = None

    def options(self) -> Any:
        """The DevStackOptions Triton is rendered with (also given to front-ends that run their own Triton)."""
        from gateway.devstack import DevStackOptions

        return DevStackOptions(
            engine="synthetic",
            synthetic_ttft_ms=self.ttft_ms,
            synthetic_itl_ms=self.itl_ms,
            max_num_active=self.max_active,
            engine_instance_count=self.engine_instances,
            synthetic_tokens_per_response=self.tokens_per_response,
            max_batch_size=64,
            # Guides are accepted (the json_schema variant) but the synthetic engine ignores them.
            guided_decoding_backend="xgrammar",
        )

    def start(self) -> Any:
        """Start Triton (a fresh work folder per start, so a crashed server's log survives)."""
        from gateway.devstack import dev_triton

        options = self.options()
        folder = self.work_dir / f"triton-{self.starts}"
        self.starts += 1
        self._exit = contextlib.ExitStack()
        with affinity(self.placement.triton):
            self.server = self._exit.enter_context(dev_triton(options, work_dir=folder))
        logger.info("Triton ready: grpc %s, http %s, cpus %s", self.server.grpc_url, self.server.http_url,
                    self.placement.triton or "all")  # fmt: skip
        return self.server

    def stop(self) -> None:
        """Stop Triton."""
        if self._exit is not None:
            self._exit.close()
            self._exit = None

    def alive(self) -> bool:
        """Whether tritonserver and every Python backend stub under it are still running (a stub that died
        leaves Triton up but its model hanging)."""
        if self.server is None or self.server.process.poll() is not None:
            return False
        try:
            stubs = psutil.Process(self.server.process.pid).children()
            return all(stub.status() != psutil.STATUS_ZOMBIE for stub in stubs)
        except psutil.Error:
            return False

    def restart(self) -> Any:
        """Start a new server; if the old one died, record the crash (the tail of its log) first."""
        if self.server is not None and not self.alive():
            tail = self.server.log_tail(15)
            if self.server.process.poll() is None:
                tail += "\n(a Python backend stub died; tritonserver itself was still running)"
            self.crashes.append(tail)
            logger.error("tritonserver died (crash %d):\n%s", len(self.crashes), tail)
        self.stop()
        return self.start()

    def tree(self) -> ProcessTree:
        """Triton and its Python backend stubs."""
        return ProcessTree([self.server.process.pid])

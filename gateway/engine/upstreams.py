"""The upstreams of a pool: one engine per Triton replica, its load, passive ejection, and DNS re-resolution.

- Active health: each upstream's engine polls Triton's server and model readiness (TritonEngine's watcher); an
  upstream that is not ready is not a candidate.
- Passive ejection: `failures` consecutive failed requests eject an upstream for `base_s`, doubled at each
  ejection that follows without a success in between, up to `max_s`. Failures while it is out (requests that
  were already running there) change nothing. When the time is up it is a candidate again; one more failure
  ejects it again at once, one success clears its record. (The pool ignores ejections when every ready upstream
  is ejected: refusing everything would be worse.)
- `dns:///name:port` is resolved now and every `dns_interval_s` (a Kubernetes headless Service answers with one
  address per ready pod): new addresses become upstreams, vanished ones stop getting requests and are closed once
  their last request ends. A failed lookup keeps the addresses known so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.engine.base import Engine
from gateway.errors import ConfigurationError

logger = logging.getLogger(__name__)

DNS_SCHEME = "dns:///"


@dataclass(frozen=True)
class EjectionPolicy:
    """When passive health checking takes an upstream out, and for how long."""

    failures: int = 3
    base_s: float = 2.0
    max_s: float = 60.0


@dataclass(frozen=True)
class UpstreamSource:
    """One configured upstream: `host:port`, or `dns:///name:port` to resolve into several."""

    text: str
    host: str
    port: int
    dns: bool

    @classmethod
    def parse(cls, text: str) -> UpstreamSource:
        """Parse `host:port`, `[v6]:port` or `dns:///name:port`; ValueError says what is wrong."""
        dns = text.startswith(DNS_SCHEME)
        rest = text[len(DNS_SCHEME) :] if dns else text
        host, sep, port_text = rest.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep or not host or "/" in host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"'{text}' is not host:port or dns:///name:port")
        return cls(text, host, int(port_text), dns)


def join_host_port(host: str, port: int) -> str:
    """`host:port`, with IPv6 addresses in brackets (as gRPC targets want them)."""
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    return f"{host}:{port}"


class Upstream:
    """One replica: its engine, requests in flight, and its passive-health record."""

    def __init__(
        self, address: str, source: str, engine: Engine, ejection: EjectionPolicy, clock: Callable[[], float]
    ) -> None:
        self.address = address
        self.source = source  # the configured entry it came from
        self.engine = engine
        self.in_flight = 0
        self.retired = False  # gone from DNS: no new requests, closed when idle
        self.loras: set[int] = set()  # LoRA task ids it has been sent the weights of (and not reported evicted)
        self._ejection = ejection
        self._clock = clock
        self._failures = 0
        self._streak = 0  # ejections since the last success
        self.ejected_until = 0.0

    def available(self) -> bool:
        """A candidate for a new request: known, ready, not ejected."""
        return self._clock() >= self.ejected_until and self.ready()

    def ready(self) -> bool:
        """Known (not retired) and ready by Triton's own account."""
        return not self.retired and self.engine.info().ready

    def ejected(self) -> bool:
        """Whether passive health checking has it out now."""
        return self._clock() < self.ejected_until

    def succeeded(self) -> None:
        """A request ended well: forget past failures."""
        self._failures = 0
        self._streak = 0

    def failed(self) -> float | None:
        """A request failed for the upstream's sake; returns the ejection time when this ejects it."""
        self._failures += 1
        if self._failures < self._ejection.failures or self.ejected():
            return None
        duration = min(self._ejection.max_s, self._ejection.base_s * 2**self._streak)
        self._streak += 1
        self.ejected_until = self._clock() + duration
        logger.warning("upstream %s ejected for %.1f s after %d failures", self.address, duration, self._failures)
        return duration


class UpstreamSet:
    """The live upstreams of one model, built from its sources by `engine_factory(address)`."""

    def __init__(
        self,
        sources: list[UpstreamSource],
        engine_factory: Callable[[str], Engine],
        ejection: EjectionPolicy,
        dns_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not sources:
            raise ConfigurationError("a pool needs at least one upstream")
        self._sources = sources
        self._factory = engine_factory
        self._ejection = ejection
        self._dns_interval_s = dns_interval_s
        self._clock = clock
        self._by_address: dict[str, Upstream] = {}
        self._retired: list[Upstream] = []
        self._resolver: asyncio.Task[None] | None = None
        self.on_change: Callable[[Upstream, bool], None] = lambda upstream, added: None

    @property
    def upstreams(self) -> list[Upstream]:
        """Every current (not retired) upstream."""
        return list(self._by_address.values())

    async def start(self) -> None:
        """Resolve every source, start the engines, and keep DNS sources fresh in the background."""
        await self._resolve()
        if any(source.dns for source in self._sources):
            self._resolver = asyncio.create_task(self._keep_resolving(), name="upstream-dns")

    async def close(self) -> None:
        """Stop resolving and close every engine."""
        if self._resolver is not None:
            self._resolver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resolver
        for upstream in [*self._by_address.values(), *self._retired]:
            await upstream.engine.close()
        self._by_address.clear()
        self._retired.clear()

    async def release(self, upstream: Upstream) -> None:
        """A request on `upstream` ended: close it if it was retired and is now idle."""
        if upstream.retired and upstream.in_flight == 0 and upstream in self._retired:
            self._retired.remove(upstream)
            await upstream.engine.close()

    async def _keep_resolving(self) -> None:
        while True:
            await asyncio.sleep(self._dns_interval_s)
            await self._resolve()

    async def _resolve(self) -> None:
        wanted: dict[str, str] = {}  # address -> the source that gave it
        for source in self._sources:
            if not source.dns:
                wanted[join_host_port(source.host, source.port)] = source.text
                continue
            addresses = await self._lookup(source)
            if addresses is None:  # lookup failed: keep what this source gave before
                addresses = {a for a, u in self._by_address.items() if u.source == source.text}
            wanted.update(dict.fromkeys(addresses, source.text))
        await self._apply(wanted)

    async def _lookup(self, source: UpstreamSource) -> set[str] | None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(source.host, source.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            logger.warning("cannot resolve %s: %s", source.text, exc)
            return None
        return {join_host_port(str(info[4][0]), source.port) for info in infos}

    async def _apply(self, wanted: dict[str, str]) -> None:
        added = [address for address in sorted(wanted) if address not in self._by_address]
        starting = []
        for address in added:
            upstream = Upstream(address, wanted[address], self._factory(address), self._ejection, self._clock)
            self._by_address[address] = upstream
            starting.append(upstream.engine.start())
            self.on_change(upstream, True)
            logger.info("upstream %s added", address)
        await asyncio.gather(*starting)
        for address in [a for a in self._by_address if a not in wanted]:
            upstream = self._by_address.pop(address)
            upstream.retired = True
            self.on_change(upstream, False)
            logger.info("upstream %s removed (gone from DNS)", address)
            self._retired.append(upstream)
            await self.release(upstream)

"""Fetching an image URL for a client, without becoming a way into the gateway's network (SSRF).

- Only `http` and `https`, no credentials in the URL, at most `max_redirects` redirects, each hop checked anew.
- The host is resolved here and **every** address it resolves to must be public (`is_global`, with IPv4 inside
  IPv6 forms such as `::ffff:a.b.c.d` checked as IPv4), else in an allowed network: loopback, private, link-local
  (cloud metadata at 169.254.169.254), shared and reserved addresses are refused before any connection. The
  connection then goes to the checked address itself (the Host header and TLS server name keep the host name), so
  a second DNS answer cannot swap in another address (no DNS-rebinding window).
- A time limit over the whole fetch (resolution, redirects, body), a byte limit (a larger Content-Length is
  refused unread; a body is cut off at the limit), no content encoding (`identity` only, so no gzip bomb), and a
  response that is not `image/*` (or `application/octet-stream`) is refused.
- httpx's transport is used directly: no cookie jar shared between clients' requests, no proxy from the
  environment, and no kept-alive connection (a pooled connection is keyed by address, and would carry a second
  host's request over a TLS session checked for the first).
Refusals are `ImageFetchError`s with a message for the client that names no resolved address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

REDIRECTS = frozenset({301, 302, 303, 307, 308})
IMAGE_TYPES_ALSO = frozenset({"application/octet-stream", "binary/octet-stream"})
# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64, 6to4 carries it in bits 16-48).
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
USER_AGENT = "trtllm-gateway-image-fetch"


class ImageFetchError(Exception):
    """The URL was refused or could not be fetched; the message is for the client."""


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """What a fetch may do."""

    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 3
    allowed_networks: tuple[IPNetwork, ...] = ()  # non-public networks that may be fetched from anyway


@dataclass(frozen=True, slots=True)
class FetchedBody:
    """A response body and its declared media type."""

    data: bytes
    content_type: str


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in SIX_TO_FOUR:
        return address.sixtofour
    return None


def is_fetchable(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> bool:
    """Whether the gateway may connect to `address`: public, or inside an allowed network."""
    if any(address in network for network in allowed if network.version == address.version):
        return True
    inner = embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    if inner is not None:
        return is_fetchable(inner, allowed)
    return address.is_global and not address.is_multicast


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (getaddrinfo, off the event loop's thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class ImageFetcher:
    """Fetches image URLs under a FetchPolicy (see the module docstring)."""

    def __init__(self, policy: FetchPolicy, resolve: Resolver = system_resolve) -> None:
        self.policy = policy
        self._resolve = resolve
        self._transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0), retries=0)

    async def fetch(self, url: str) -> FetchedBody:
        """The body at `url` (following checked redirects); ImageFetchError for anything refused or failed."""
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                return await self._follow(url)
        except TimeoutError:
            raise ImageFetchError(f"the image URL did not answer within {self.policy.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise ImageFetchError(f"the image URL could not be fetched ({type(exc).__name__})") from None

    async def close(self) -> None:
        """Release the transport."""
        await self._transport.aclose()

    async def _follow(self, url: str) -> FetchedBody:
        target = parse_url(url)
        for _ in range(self.policy.max_redirects + 1):
            address = await self._checked_address(target)
            response = await self._transport.handle_async_request(request_to(target, address))
            try:
                if response.status_code in REDIRECTS and "location" in response.headers:
                    target = parse_url(str(target.join(response.headers["location"])), redirected=True)
                    continue
                return await self._body(response)
            finally:
                await response.aclose()
        raise ImageFetchError(f"the image URL redirects more than {self.policy.max_redirects} times")

    async def _checked_address(self, url: httpx.URL) -> str:
        """The address to connect to: every address of the host must be fetchable."""
        host = url.host
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                found = await self._resolve(host, url.port or (443 if url.scheme == "https" else 80))
            except OSError:
                raise ImageFetchError("the image URL's host name does not resolve") from None
            addresses = [ipaddress.ip_address(address.split("%")[0]) for address in found]
        if not addresses:
            raise ImageFetchError("the image URL's host name does not resolve")
        if not all(is_fetchable(address, self.policy.allowed_networks) for address in addresses):
            raise ImageFetchError(
                "the image URL's host is a loopback, private, link-local or otherwise non-public address, which "
                "the gateway does not fetch from"
            )
        return str(addresses[0])

    async def _body(self, response: httpx.Response) -> FetchedBody:
        if response.status_code != 200:
            raise ImageFetchError(f"the image URL answered HTTP {response.status_code}")
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not content_type.startswith("image/") and content_type not in IMAGE_TYPES_ALSO:
            raise ImageFetchError(f"the image URL's content is {content_type or 'untyped'}, not an image")
        if response.headers.get("content-encoding", "identity").lower() != "identity":
            raise ImageFetchError("the image URL's content is encoded (compressed); the gateway takes it as is")
        limit = self.policy.max_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ImageFetchError(f"the image is larger than {limit} bytes (Content-Length {declared})")
        chunks: list[bytes] = []
        received = 0
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received > limit:
                raise ImageFetchError(f"the image is larger than {limit} bytes")
            chunks.append(chunk)
        return FetchedBody(b"".join(chunks), content_type)


def parse_url(url: str, redirected: bool = False) -> httpx.URL:
    """An http(s) URL with a host and no credentials; ImageFetchError otherwise."""
    where = "redirects to a URL that" if redirected else "URL"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise ImageFetchError(f"the image {where} is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ImageFetchError(f"the image {where} is not an http(s) URL with a host")
    if parsed.userinfo:
        raise ImageFetchError(f"the image {where} carries credentials, which the gateway does not send")
    return parsed


def request_to(url: httpx.URL, address: str) -> httpx.Request:
    """A GET for `url` sent to `address`: the Host header and the TLS server name stay the URL's host."""
    headers = {
        "host": url.netloc.decode("ascii"),
        "accept": "image/*",
        "accept-encoding": "identity",
        "user-agent": USER_AGENT,
    }
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return httpx.Request("GET", url.copy_with(host=address), headers=headers, extensions=extensions)

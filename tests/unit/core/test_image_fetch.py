"""Fetching image URLs: limits, content checks, and no way into non-public addresses (SSRF), against a local server."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterator

import pytest

from gateway.core.image_fetch import FetchPolicy, ImageFetcher, ImageFetchError, is_fetchable
from tests.image_server import ImageServer, Route, image_server, png

# The test server listens on 127.0.0.2; only that address is allowed (as --image-fetch-allow-networks would).
ALLOWED = (ipaddress.ip_network("127.0.0.2/32"),)


@pytest.fixture
def server() -> Iterator[ImageServer]:
    with image_server("127.0.0.2") as running:
        yield running


@pytest.fixture
def elsewhere() -> Iterator[ImageServer]:
    """A server on 127.0.0.1, which no test may reach: it records every request that would be a breach."""
    with image_server("127.0.0.1") as running:
        yield running


def fetcher(policy: FetchPolicy | None = None, answers: dict[str, list[str]] | None = None) -> ImageFetcher:
    """A fetcher whose host names resolve through `answers` (and count the lookups)."""

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        if answers is None or host not in answers:
            raise OSError("no such host")
        return answers[host]

    lookups: list[str] = []
    made = ImageFetcher(policy or FetchPolicy(allowed_networks=ALLOWED), resolve)
    made.lookups = lookups  # type: ignore[attr-defined]
    return made


async def refused(made: ImageFetcher, url: str) -> str:
    with pytest.raises(ImageFetchError) as caught:
        await made.fetch(url)
    return str(caught.value)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.100.100.200", "0.0.0.0",
     "::1", "fe80::1", "fd00:ec2::254", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe",
     "2002:7f00:1::", "224.0.0.1", "255.255.255.255"],
)  # fmt: skip
def test_non_public_addresses_are_not_fetchable(address: str) -> None:
    assert not is_fetchable(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_fetchable(address: str) -> None:
    assert is_fetchable(ipaddress.ip_address(address))


def test_an_allowed_network_is_fetchable_and_nothing_beside_it() -> None:
    assert is_fetchable(ipaddress.ip_address("127.0.0.2"), ALLOWED)
    assert not is_fetchable(ipaddress.ip_address("127.0.0.3"), ALLOWED)


async def test_an_image_is_fetched_from_the_checked_address_with_the_host_name_kept(server: ImageServer) -> None:
    body = png()
    server.routes["/cat.png"] = Route(headers={"content-type": "image/png"}, body=body)
    made = fetcher(answers={"images.test": ["127.0.0.2"]})
    fetched = await made.fetch(server.url("/cat.png", host="images.test"))
    assert fetched.data == body and fetched.content_type == "image/png"
    assert server.seen == [("/cat.png", f"images.test:{server.port}")]
    assert made.lookups == ["images.test"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/x.png",
        "http://[::1]:{port}/x.png",
        "http://0x7f000001:{port}/",
        "http://localhost:{port}/",
    ],
)
async def test_loopback_is_refused_without_a_connection(elsewhere: ImageServer, url: str) -> None:
    # The system resolver: getaddrinfo reads 0x7f000001 as 127.0.0.1, and localhost is loopback.
    message = await refused(ImageFetcher(FetchPolicy()), url.format(port=elsewhere.port))
    assert "non-public" in message
    assert elsewhere.seen == []


async def test_the_metadata_address_is_refused() -> None:
    message = await refused(fetcher(FetchPolicy()), "http://169.254.169.254/latest/meta-data/")
    assert "non-public" in message and "169.254" not in message


async def test_a_name_with_one_private_address_among_public_ones_is_refused(elsewhere: ImageServer) -> None:
    made = fetcher(FetchPolicy(), answers={"mixed.test": ["8.8.8.8", "127.0.0.1"]})
    assert "non-public" in await refused(made, elsewhere.url("/x.png", host="mixed.test"))
    assert elsewhere.seen == []


async def test_a_redirect_to_a_private_address_is_refused_before_connecting(
    server: ImageServer, elsewhere: ImageServer
) -> None:
    server.routes["/go"] = Route(302, headers={"location": elsewhere.url("/secret")})
    assert "non-public" in await refused(fetcher(), server.url("/go"))
    assert server.seen == [("/go", f"127.0.0.2:{server.port}")] and elsewhere.seen == []


async def test_redirects_are_followed_up_to_the_limit(server: ImageServer) -> None:
    server.routes["/a"] = Route(301, headers={"location": "/b"})
    server.routes["/b"] = Route(307, headers={"location": server.url("/c.png")})
    server.routes["/c.png"] = Route(headers={"content-type": "image/png"}, body=png())
    assert (await fetcher().fetch(server.url("/a"))).data == png()
    server.routes["/loop"] = Route(302, headers={"location": "/loop"})
    assert "redirects more than 3 times" in await refused(fetcher(), server.url("/loop"))
    assert [path for path, _ in server.seen].count("/loop") == 4


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://example.com/x.png", "not an http(s) URL"),
        ("file:///etc/passwd", "not an http(s) URL"),
        ("http://user:secret@example.com/x.png", "credentials"),
        ("http:///x.png", "not an http(s) URL"),
        ("http://nowhere.test/x.png", "does not resolve"),
    ],
)
async def test_urls_the_gateway_does_not_fetch(url: str, says: str) -> None:
    assert says in await refused(fetcher(FetchPolicy()), url)


async def test_a_non_image_content_type_is_refused(server: ImageServer) -> None:
    server.routes["/page"] = Route(headers={"content-type": "text/html; charset=utf-8"}, body=b"<html></html>")
    assert "text/html, not an image" in await refused(fetcher(), server.url("/page"))


async def test_an_http_error_is_reported(server: ImageServer) -> None:
    assert "HTTP 404" in await refused(fetcher(), server.url("/missing.png"))


async def test_a_declared_size_above_the_limit_is_refused_unread(server: ImageServer) -> None:
    server.routes["/big.png"] = Route(
        headers={"content-type": "image/png", "content-length": str(30 * 1024 * 1024)}, write=lambda out: None
    )
    assert "larger than" in await refused(fetcher(), server.url("/big.png"))


async def test_an_undeclared_body_is_cut_at_the_limit(server: ImageServer) -> None:
    sent: list[int] = []

    def endless(out: object) -> None:
        chunk = b"\0" * 65536
        for _ in range(30 * 16):  # 30 MiB unless the reader goes away first
            out.write(chunk)  # type: ignore[attr-defined]
            sent.append(len(chunk))

    server.routes["/stream.png"] = Route(headers={"content-type": "image/png", "connection": "close"}, write=endless)
    policy = FetchPolicy(max_bytes=1024 * 1024, allowed_networks=ALLOWED)
    assert "larger than 1048576 bytes" in await refused(fetcher(policy), server.url("/stream.png"))
    await asyncio.sleep(0.2)
    assert sum(sent) < 30 * 1024 * 1024


async def test_a_compressed_body_is_refused(server: ImageServer) -> None:
    server.routes["/z.png"] = Route(headers={"content-type": "image/png", "content-encoding": "gzip"}, body=b"x")
    assert "encoded" in await refused(fetcher(), server.url("/z.png"))


async def test_a_slow_server_is_cut_off_at_the_time_limit(server: ImageServer) -> None:
    server.routes["/slow.png"] = Route(headers={"content-type": "image/png"}, write=lambda out: time.sleep(2))
    policy = FetchPolicy(timeout_s=0.3, allowed_networks=ALLOWED)
    started = time.monotonic()
    assert "within 0.3 s" in await refused(fetcher(policy), server.url("/slow.png"))
    assert time.monotonic() - started < 1.5

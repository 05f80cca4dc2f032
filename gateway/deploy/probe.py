"""Container health probe: `python3 -m gateway.deploy.probe [path]` exits 0 when the gateway answers 200.

Used by the image's HEALTHCHECK; standard library only, so that it starts in well under a second.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def probe_url(path: str) -> str:
    """The gateway's own URL for `path`, from GATEWAY_HOST and GATEWAY_PORT."""
    host = os.environ.get("GATEWAY_HOST", "127.0.0.1")
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{os.environ.get('GATEWAY_PORT', '8000')}{path}"


def main(argv: list[str]) -> int:
    """0 if GET path answers 200 within 3 s, else 1 with the reason on stderr."""
    url = probe_url(argv[0] if argv else "/health/live")
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"probe {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Signatures of the thinking the gateway returns, so that only its own thinking comes back into a prompt.

Clients send earlier assistant turns back with their `thinking` blocks, and the template renders that text as the
model's own reasoning: a client could otherwise put words in the model's mouth. The gateway signs each thinking
text it returns with the deployment's sealer (an HMAC under `--state-key`, which workers and replicas share), and
a thinking block whose signature does not match its text is a 400, as Anthropic's is.
"""

from __future__ import annotations

from gateway.protocols.sealing import Sealer

THINKING_PURPOSE = b"messages thinking"


class ThinkingSigner:
    """Signs and verifies thinking texts with the deployment's sealer."""

    __slots__ = ("_sealer",)

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer

    def sign(self, thinking: str) -> str:
        """The signature of a thinking text."""
        return self._sealer.sign(thinking, THINKING_PURPOSE)

    def verify(self, thinking: str, signature: str) -> bool:
        """Whether `signature` is this deployment's signature of `thinking`."""
        return self._sealer.verify(thinking, signature, THINKING_PURPOSE)

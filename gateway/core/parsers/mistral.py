"""`mistral`: Mistral models' `[TOOL_CALLS]`, in both forms the tokenizer versions use.

Up to tokenizer v7 (Mistral 7B v0.3, Nemo, Large 2): a JSON list after the marker.

    [TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]

From v11 (Mistral Small 3.1/3.2, Magistral, Devstral): one marker per call, the name, `[ARGS]`, the arguments
(v13 may put `[CALL_ID]id` before `[ARGS]`; older v11 builds omit `[ARGS]`).

    [TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{}

Call ids default to nine letters and digits, the only ids Mistral's chat templates accept back in the history.
"""

from __future__ import annotations

import re

from gateway.core.parsers.base import loads, random_mistral_id
from gateway.core.parsers.marker import MarkerToolParser
from gateway.core.parsers.scan import NestingScanner

_NAMED = re.compile(r"\s*([A-Za-z0-9_.\-]+)\s*(?:\[CALL_ID\]\s*[A-Za-z0-9_\-]*\s*)?(?:\[ARGS\])?\s*\{")
_HEADER_PREFIX = re.compile(r"\s*[\w.\-]*\s*(?:\[[A-Z_]*\]?\s*[\w\-]*\s*)*")  # what can still grow into one
_MAX_HEADER = 256  # a name form whose `{` has not come within this many characters is not one


class MistralToolParser(MarkerToolParser):
    """`[TOOL_CALLS]` then a JSON list of calls, or a name, optional `[CALL_ID]...`, `[ARGS]` and a JSON object."""

    name = "mistral"
    start = "[TOOL_CALLS]"
    markers = ("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]")
    default_id = staticmethod(random_mistral_id)

    def _open_block(self) -> None:
        self._scanner: NestingScanner | None = None
        self._value_start = 0
        self._header = ""

    def _block(self, final: bool) -> bool:
        buf = self._buf
        if self._scanner is None:
            ready = self._begin_value(buf, final)
            if ready is not True:
                return ready is None
        assert self._scanner is not None
        end = self._scanner.end(buf)
        if end is None:
            if not final:
                return False
            end = len(buf)
        self._buf = buf[end:]
        raw = self.start + buf[:end]
        value, ok = loads(buf[self._value_start : end])
        if not ok:
            self._reject(raw, "the calls are not valid JSON")
        elif self._header:
            self._call(self._header, value, raw)
        elif not isinstance(value, list) or not value:
            self._reject(raw, "the calls are not a non-empty list")
        elif all(isinstance(item, dict) for item in value):
            self._calls_from_list(value, raw)
        else:
            self._reject(raw, "a call is not a JSON object")
        return True

    def _begin_value(self, buf: str, final: bool) -> bool | None:
        """Find where the JSON value starts: True when found, False to wait for more, None when rejected."""
        stripped = buf.lstrip()
        if stripped.startswith("["):
            self._value_start = len(buf) - len(stripped)
        else:
            match = _NAMED.match(buf)
            if match is None:
                if final or "{" in buf or len(buf) > _MAX_HEADER or not _HEADER_PREFIX.fullmatch(buf):
                    self._reject(self.start, "no call after the start marker")  # the text goes on as content
                    return None
                return False
            self._header = match.group(1)
            self._value_start = match.end() - 1
        self._scanner = NestingScanner(self._value_start)
        return True

    def _calls_from_list(self, calls: list[dict[str, object]], raw: str) -> None:
        """All calls of the list, or none: one bad call rejects the list."""
        for item in calls:
            reason = self._check(item.get("name"), item.get("arguments", item.get("parameters")))
            if reason is not None:
                self._reject(raw, reason)
                return
        for item in calls:
            self._call_from_object(item, raw)

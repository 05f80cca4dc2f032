"""prometheus-client metrics whose `labels(...)` children are memoised by their label values.

`labels()` validates, converts and locks on every call; a request records about fifteen labelled samples, and the
gateway's label values are bounded (models, endpoints, status codes, reasons, upstream addresses), so each child
is looked up once and kept.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram


class _MemoisedLabels:
    """Mixin for a prometheus-client metric class: positional `labels(*values)` looked up in a dict first."""

    def labels(self, *values: Any, **named: Any) -> Any:
        """The child for these label values (keyword labels are not memoised)."""
        parent_labels = super().labels  # type: ignore[misc]
        if named:
            return parent_labels(*values, **named)
        children: dict[tuple[Any, ...], Any] = self.__dict__.setdefault("_memoised_children", {})
        child = children.get(values)
        if child is None:
            child = children[values] = parent_labels(*values)
        return child

    def remove(self, *values: Any) -> None:
        """Drop the child of these label values (and its memo: labels() then makes a new, exported one)."""
        self.__dict__.get("_memoised_children", {}).pop(values, None)
        super().remove(*values)  # type: ignore[misc]


class LabelledCounter(_MemoisedLabels, Counter):
    """A Counter with memoised children."""


class LabelledGauge(_MemoisedLabels, Gauge):
    """A Gauge with memoised children."""


class LabelledHistogram(_MemoisedLabels, Histogram):
    """A Histogram with memoised children."""

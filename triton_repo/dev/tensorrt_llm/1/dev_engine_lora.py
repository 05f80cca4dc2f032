"""The synthetic engine's LoRA cache: which adapters an instance holds, as TensorRT-LLM's LoRA cache does.

A request names its adapter by `lora_task_id`; the first one (and any after the adapter was evicted) must carry
`lora_weights` and `lora_config`, else it is refused with the executor's message. Holding more than `capacity`
adapters evicts the least recently used.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from dev_engine_job import RequestError


class LoraCache:
    """Adapter task ids held by one engine instance (execute() runs on several threads: hence the lock)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._held: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.Lock()

    def use(self, task_id: int, with_weights: bool) -> None:
        """Admit a request for `task_id`; RequestError when the adapter is not held and no weights came."""
        with self._lock:
            if task_id not in self._held and not with_weights:
                raise RequestError(f"LoRA task {task_id} not found in cache. Please send LoRA weights with request")
            self._held[task_id] = None
            self._held.move_to_end(task_id)
            while len(self._held) > self.capacity:
                self._held.popitem(last=False)

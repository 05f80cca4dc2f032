"""What the dev engines share: the waiting queue, in-flight capacity, stops and cancels, responses and metrics.

Each engine runs one scheduler thread. Triton's execute() only enqueues (it must return at once in decoupled
mode); admission, generation and building every response happen on the scheduler thread, and the sender
threads of dev_engine_replies deliver the responses.

Ending a request early works as in TensorRT-LLM's backend (model_instance_state.cc, executorImpl.cpp): a `stop`
request ends the jobs queued under its Triton request id *at that moment* (an id that has not arrived yet is
not remembered: the request that comes later runs to its end), and a client cancel, polled every
`cancellation_check_period_ms`, does the same for its own request. A job that is still queued is not taken out
of the queue: like the executor, which terminates a cancelled request only once it is active, the scheduler
ends it when it would have admitted it, so until a slot frees up it still counts as running.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable

import triton_python_backend_utils as pb_utils
from dev_engine_io import build_response, error_response
from dev_engine_job import FinishReason, GenerationJob
from dev_engine_metrics import EngineMetrics


class EngineCore:
    """Queue, capacity and bookkeeping shared by the engines; subclasses implement `_run`."""

    name = "engine"
    vocab_size: int
    takes_prompt_tables = False  # prompt ids past the vocabulary point at rows of a prompt table (images)

    def __init__(self, max_num_active: int, metrics: EngineMetrics) -> None:
        self.max_num_active = max_num_active
        self._metrics = metrics
        self._cv = threading.Condition()
        self._waiting: deque[GenerationJob] = deque()
        self._stopping: list[GenerationJob] = []
        self._by_request_id: dict[str, set[GenerationJob]] = {}
        self._num_live = 0
        self._num_active = 0
        self._num_context = 0  # admitted jobs that have not produced their first token
        self._new_tokens = 0
        self._running = True
        self._thread = threading.Thread(target=self._guarded_run, name=f"dev-{self.name}", daemon=True)

    def start(self) -> None:
        """Start the scheduler thread."""
        self._thread.start()

    def shutdown(self) -> None:
        """Stop the scheduler thread and fail whatever is still pending."""
        with self._cv:
            self._running = False
            self._cv.notify_all()
        self._thread.join(timeout=10)
        with self._cv:
            pending = [job for jobs in self._by_request_id.values() for job in jobs]
        for job in pending:
            self._fail(job, "the dev engine is shutting down")

    def prepare(self, job: GenerationJob) -> None:
        """Check or adjust a job before it is queued; raise RequestError if this engine cannot run it."""

    def submit(self, jobs: list[GenerationJob]) -> None:
        """Queue the jobs of one request (called from execute())."""
        with self._cv:
            for job in jobs:
                self._by_request_id.setdefault(job.request_id, set()).add(job)
                self._waiting.append(job)
            self._num_live += len(jobs)
            self._cv.notify()
        jobs[0].reply.on_cancel(lambda: self._end_early(jobs))

    def stop_request(self, request_id: str) -> None:
        """End every job queued or running under this Triton request id (a `stop` request)."""
        with self._cv:
            jobs = list(self._by_request_id.get(request_id, ()))
        self._end_early(jobs)

    def _end_early(self, jobs: list[GenerationJob]) -> None:
        """End these jobs: running ones in the scheduler's next pass, queued ones when their turn comes."""
        with self._cv:
            for job in jobs:
                job.stop_requested = True
            self._stopping.extend(jobs)
            self._cv.notify()

    # --- scheduler-thread helpers -------------------------------------------------------------------------

    def _run(self) -> None:
        """The scheduler loop; returns when `self.running` turns false."""
        raise NotImplementedError

    def _reset(self) -> None:
        """Drop engine state after the scheduler loop broke (every job has been failed by then)."""

    def _guarded_run(self) -> None:
        while self.running:
            try:
                self._run()
            except Exception:
                # Never leave clients hanging, and keep serving: fail what is in flight, then start over.
                message = f"dev engine scheduler failed: {traceback.format_exc()}"
                pb_utils.Logger.log_error(message)
                with self._cv:
                    pending = [job for jobs in self._by_request_id.values() for job in jobs]
                for job in pending:
                    self._fail(job, message)
                self._reset()

    def _take_work(self, timeout: float | None) -> tuple[list[GenerationJob], list[GenerationJob]]:
        """Wait (up to `timeout`) for work; return newly admitted jobs and jobs to end now."""
        with self._cv:
            if self._running and not self._stopping and not self._admissible():
                self._cv.wait(timeout)
            # Queued jobs stay queued (their stop_requested flag ends them below, when their turn comes).
            ending = [job for job in self._stopping if job.admitted]
            self._stopping = []
            admitted = []
            while self._admissible():
                job = self._waiting.popleft()
                if job.done:
                    continue
                if job.stop_requested:
                    ending.append(job)
                    continue
                job.admitted = True
                job.first_scheduled_ns = time.time_ns()
                self._num_active += 1
                self._num_context += 1
                admitted.append(job)
        return admitted, ending

    def _admissible(self) -> bool:
        return bool(self._waiting) and self._num_active < self.max_num_active

    def _advance(self, job: GenerationJob, token: int, log_prob: float) -> bool:
        """Record one sampled token, send what the client sees, and say whether the job is done."""
        return self._advance_many(job, lambda: (token, log_prob), 1)

    def _advance_many(self, job: GenerationJob, sample: Callable[[], tuple[int, float]], count: int) -> bool:
        """Record up to `count` tokens drawn from `sample`, streamed as one response; say whether the job is done."""
        try:
            tokens: list[int] = []
            log_probs: list[float] = []
            reason = None
            in_context = not job.first_token_ns
            while reason is None and len(tokens) < count:
                token, log_prob = sample()
                reason = job.add_token(token, log_prob)
                if reason is not FinishReason.END_ID:  # the end id itself is never returned
                    tokens.append(token)
                    log_probs.append(log_prob)
            if in_context:
                self._num_context -= 1
            self._new_tokens += len(tokens)
            if job.streaming and tokens:
                job.reply.send(build_response(job, tokens, log_probs), item_done=reason is not None)
                if reason is not None:
                    self._retire(job)
                return reason is not None
            if reason is not None:
                self._finish(job)
            return reason is not None
        except Exception as exc:
            self._fail(job, f"dev engine failed on this request: {exc!r}")
            return True

    def _finish(self, job: GenerationJob) -> None:
        """Send a job's final response when it ends without a new token: end_id, a stop request, a client
        cancel (like the executor, which answers a cancelled request too), or any non-streaming end."""
        if job.done:
            return
        try:
            tokens, log_probs = ([], []) if job.streaming else (job.output_tokens(), job.log_probs)
            job.reply.send(build_response(job, tokens, log_probs), item_done=True)
        except Exception as exc:
            self._fail(job, f"dev engine failed on this request: {exc!r}")
            return
        self._retire(job)

    def _fail(self, job: GenerationJob, message: str) -> None:
        """End one job with an error response."""
        if job.done:
            return
        job.reply.send(error_response(message), item_done=True)
        self._retire(job)

    def _retire(self, job: GenerationJob) -> None:
        job.done = True
        with self._cv:
            jobs = self._by_request_id.get(job.request_id)
            if jobs is not None:
                jobs.discard(job)
                if not jobs:
                    del self._by_request_id[job.request_id]
            self._num_live -= 1
            if job.admitted:
                self._num_active -= 1
                if not job.first_token_ns:
                    self._num_context -= 1
                # A slot opened: let the loop admit the next waiting job.
                self._cv.notify()

    def _publish_metrics(self) -> None:
        self._metrics.publish(
            self._num_live, self._num_active, self._num_context, self.max_num_active, self._new_tokens
        )
        self._new_tokens = 0

    @property
    def running(self) -> bool:
        """False once shutdown() was called."""
        return self._running

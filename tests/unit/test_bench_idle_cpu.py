"""bench.idle_cpu: threads grouped and priced per second, from this very process's /proc entries."""

from __future__ import annotations

import os
import threading
import time

from bench.idle_cpu import TICKS_PER_S, ThreadSample, per_second, report, sample_threads, thread_group


def test_threads_are_grouped_as_the_report_names_them() -> None:
    assert thread_group(100, 100, "python") == "main thread (event loop)"
    assert thread_group(100, 101, "event_engine") == "grpc event_engine threads"
    assert thread_group(100, 102, "grpc_global_tim") == "grpc_global_tim threads"


def test_per_second_counts_new_threads_from_zero_and_sums_by_group() -> None:
    before = {1: ThreadSample("main", 10, 5), 2: ThreadSample("pool", 0, 0)}
    after = {
        1: ThreadSample("main", 10 + TICKS_PER_S, 25),
        2: ThreadSample("pool", 0, 2),
        3: ThreadSample("pool", 2, 4),
    }
    rates = per_second(before, after, seconds=2.0)
    assert rates["main"] == (500.0, 10.0)  # one second of CPU over 2 s, 20 switches over 2 s
    assert rates["pool"] == (2 * 1000 / TICKS_PER_S / 2.0, 3.0)


def test_a_busy_thread_of_this_process_shows_its_cpu() -> None:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    worker = threading.Thread(target=spin, name="spinner")
    worker.start()
    try:
        before = sample_threads(os.getpid())
        time.sleep(0.5)
        after = sample_threads(os.getpid())
    finally:
        stop.set()
        worker.join()
    spinner = worker.native_id
    assert spinner is not None and spinner in after
    group = after[spinner].group
    assert group.endswith(" threads") and group != "main thread (event loop)"  # named as the OS names it
    rates = per_second({spinner: before[spinner]}, {spinner: after[spinner]}, 0.5)
    assert rates[group][0] > 100  # a spinning thread: most of a core, in ms per s


def test_report_lists_each_process_and_phase_with_its_total() -> None:
    text = report(
        "ensemble",
        64,
        10.0,
        {
            "gateway/ensemble/w1": {
                "idle": {"main thread (event loop)": (2.0, 16.0), "grpc event_engine threads": (1.0, 40.0)}
            }
        },
    )
    assert "| gateway/ensemble/w1 | idle | **3.0** | 56 | main thread (event loop) 2.0 (16); grpc event_engine" in text

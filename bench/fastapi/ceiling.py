"""The harness of the model-bound ceilings (`<service>/onnxruntime_alone.py`): ONNX Runtime
alone on a benchmark's requests, with everything around the model done beforehand.

A service's script gives `prepare(bodies)`, which turns the request bodies the HTTP load
sends (one JSON per line) into `(items, feed)` pairs (what one request holds, and whatever its
runs need, made once and untimed), and `answer(feed)`, which runs the session on one
request's feed. `main` runs them in `--processes` processes for `--seconds` and prints one
line `CEILING {json}` with `requests_per_second` and `items_per_second`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from typing import Any, Callable

Prepare = Callable[[str], list[tuple[int, Any]]]
Answer = Callable[[Any], None]


def worker(prepare: Prepare, answer: Answer, bodies: str, seconds: float, offset: int,
           ready, start, counts) -> None:
    """Answers the requests in turn from `offset` once `start` is set; puts (requests, items)."""
    work = prepare(bodies)
    answer(work[0][1])
    ready.put(offset)
    start.wait()
    requests = items = 0
    deadline = time.perf_counter() + seconds
    index = offset
    while time.perf_counter() < deadline:
        count, feed = work[index % len(work)]
        answer(feed)
        requests, items, index = requests + 1, items + count, index + 1
    counts.put((requests, items))


def main(description: str, prepare: Prepare, answer: Answer) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bodies", required=True, help="request bodies, one JSON per line")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    ready, counts, start = context.Queue(), context.Queue(), context.Event()
    processes = [
        context.Process(
            target=worker,
            args=(prepare, answer, args.bodies, args.seconds, 7 * i, ready, start, counts),
        )
        for i in range(args.processes)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get()
    began = time.perf_counter()
    start.set()
    totals = [counts.get() for _ in processes]
    elapsed = time.perf_counter() - began
    for process in processes:
        process.join()
    requests, items = sum(r for r, _ in totals), sum(i for _, i in totals)
    report = {
        "processes": args.processes,
        "seconds": round(elapsed, 3),
        "requests_per_second": round(requests / elapsed, 1),
        "items_per_second": round(items / elapsed, 1),
    }
    print("CEILING " + json.dumps(report), flush=True)

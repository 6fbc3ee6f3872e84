"""The model-bound ceiling of text-embedding: ONNX Runtime alone on a benchmark's requests.

`cargo xtask bench --service text-embedding` runs it next to the HTTP load. It reads the
request bodies the load sends (one OpenAI `/v1/embeddings` body per line), tokenises each
request's texts once with the twin's own `Model` (same tokenizer, truncation and padding),
then runs the session on them in turn (a request's texts in padded runs of similar lengths,
as the twin and the Rust core group them), in `--processes` processes
of one intra-op thread each, for `--seconds`. No HTTP, JSON, tokenising or pooling is timed:
what it reports is how many of these requests the model alone can answer per second.

Prints one line `CEILING {json}` with `requests_per_second` and `texts_per_second`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time


def feeds(bodies: str) -> list[tuple[int, list[dict]]]:
    """(texts, model inputs of each run) of every request in the file."""
    from app import MODEL, similar_lengths

    result = []
    with open(bodies) as lines:
        for line in filter(str.strip, lines):
            texts = json.loads(line)["input"]
            texts = [texts] if isinstance(texts, str) else texts
            ids = MODEL.ids(texts, truncate=True)
            runs = [MODEL.feed([ids[i] for i in group]) for group in similar_lengths(ids)]
            result.append((len(texts), runs))
    return result


def worker(bodies: str, seconds: float, offset: int, ready, start, counts) -> None:
    """Runs the requests in turn from `offset` once `start` is set; puts (requests, texts)."""
    from app import MODEL

    work = feeds(bodies)
    MODEL.session.run(None, work[0][1][0])
    ready.put(offset)
    start.wait()
    requests = texts = 0
    deadline = time.perf_counter() + seconds
    index = offset
    while time.perf_counter() < deadline:
        count, runs = work[index % len(work)]
        for feed in runs:
            MODEL.session.run(None, feed)
        requests, texts, index = requests + 1, texts + count, index + 1
    counts.put((requests, texts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bodies", required=True, help="request bodies, one JSON per line")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    ready, counts, start = context.Queue(), context.Queue(), context.Event()
    processes = [
        context.Process(
            target=worker, args=(args.bodies, args.seconds, 7 * i, ready, start, counts)
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
    requests, texts = sum(r for r, _ in totals), sum(t for _, t in totals)
    report = {
        "processes": args.processes,
        "seconds": round(elapsed, 3),
        "requests_per_second": round(requests / elapsed, 1),
        "texts_per_second": round(texts / elapsed, 1),
    }
    print("CEILING " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()

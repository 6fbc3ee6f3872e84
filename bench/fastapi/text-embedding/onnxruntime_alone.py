"""The model-bound ceiling of text-embedding: ONNX Runtime alone on a benchmark's requests.

`cargo xtask bench --service text-embedding` runs it next to the HTTP load. Each request's
texts (one OpenAI `/v1/embeddings` body per line) are tokenised once, untimed, with the twin's
own `Model` (same tokenizer, truncation and padding); then the session runs them in turn (a
request's texts in padded runs of similar lengths, as the twin and the Rust core group them).
No HTTP, JSON, tokenising or pooling is timed: what it reports is how many of these requests
the model alone can answer per second. The harness is `bench/fastapi/ceiling.py`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ceiling  # noqa: E402


def prepare(bodies: str) -> list[tuple[int, list[dict]]]:
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


def answer(runs: list[dict]) -> None:
    from app import MODEL

    for feed in runs:
        MODEL.session.run(None, feed)


if __name__ == "__main__":
    ceiling.main(__doc__.splitlines()[0], prepare, answer)

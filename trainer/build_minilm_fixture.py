"""Write the parity fixture of `services/text-embedding`: what Python gives for a set of texts
with all-MiniLM-L6-v2 (int8 ONNX), the same library the Rust service tokenises with
(`tokenizers`), onnxruntime, and sentence-transformers' pooling (mean over real tokens, then L2
normalisation), written here independently of the Rust code.

Each case holds the text, its token ids (truncated to `max_tokens`), and its embedding computed
alone; the batch case runs every text in one padded batch, as the service batches requests of
different lengths, to show padding changes nothing beyond float rounding.

The `text` template of `cargo xtask new` carries a smaller one (`--texts template`): a short
text, two that are not ASCII and a truncated one.

Usage: python build_minilm_fixture.py --model model.onnx --tokenizer tokenizer.json --out FILE
       [--texts all|template]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MAX_TOKENS = 256

TEXTS = [
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password?",
    "Grüße aus München! Ça va très bien, merci.",
    "東京は日本の首都です。",
    "Emoji are text too 🚀🔥 — and so are dashes…",
    "   leading and trailing whitespace   ",
    "x",
    "UPPER CASE and lower case are the same to an uncased model",
    # Longer than the model's limit: truncated to MAX_TOKENS tokens.
    " ".join(["retrieval augmented generation needs good embeddings"] * 60),
]

# The texts of the `text` template's fixture, by index in TEXTS.
TEMPLATE_TEXTS = [0, 3, 4, 9]

# Paraphrase pairs and an unrelated sentence: a check of meaning, not of numbers.
MEANING = [
    {
        "text": "How can I change my account password?",
        "paraphrase": "What are the steps to reset my login password?",
        "unrelated": "The recipe calls for two cups of flour and an egg.",
    },
    {
        "text": "A man is playing a guitar on stage.",
        "paraphrase": "Someone performs a song with a guitar in front of an audience.",
        "unrelated": "Quarterly revenue grew by eight percent year over year.",
    },
    {
        "text": "The cat is sleeping on the sofa.",
        "paraphrase": "A kitten naps on the couch.",
        "unrelated": "The train to Berlin leaves at noon.",
    },
]


def embed(session: ort.InferenceSession, encodings: list) -> np.ndarray:
    """One run over `encodings` padded to the longest; mean over real tokens, L2 normalised."""
    length = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), length), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
        mask[row, : len(encoding.ids)] = 1
    (hidden,) = session.run(
        ["last_hidden_state"],
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
    )
    weights = mask[:, :, None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--texts", choices=["all", "template"], default="all")
    args = parser.parse_args()
    texts = TEXTS if args.texts == "all" else [TEXTS[i] for i in TEMPLATE_TEXTS]
    tokenizer = Tokenizer.from_file(str(args.tokenizer))
    tokenizer.no_padding()
    tokenizer.enable_truncation(MAX_TOKENS)
    session = ort.InferenceSession(str(args.model))
    encodings = tokenizer.encode_batch(texts)
    alone = np.concatenate([embed(session, [e]) for e in encodings])
    batched = embed(session, encodings)
    cases = [
        {"text": text, "ids": e.ids, "embedding": [float(x) for x in row]}
        for text, e, row in zip(texts, encodings, alone)
    ]
    fixture = {
        "onnxruntime": ort.__version__,
        "max_tokens": MAX_TOKENS,
        "cases": cases,
        "batched": [[float(x) for x in row] for row in batched],
        "meaning": MEANING,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture) + "\n")
    worst = min(float(a @ b) for a, b in zip(alone, batched))
    print(f"wrote {len(cases)} cases to {args.out}; alone vs batched cosine >= {worst:.7f}")


if __name__ == "__main__":
    main()

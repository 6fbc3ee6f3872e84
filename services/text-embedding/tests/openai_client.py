"""OpenAI's official Python client against a running text-embedding service; run by
tests/integration/openai.rs. Checks `/v1/embeddings` as the client sees it: a text, a list,
token ids, float and base64 encodings (asked for explicitly, base64 comes back as the string;
left to the client, it asks for base64 and decodes it itself), `usage`, and that a bad request
raises the client's own error with the service's message.

Usage: openai_client.py BASE_URL FIXTURE
Every check raises AssertionError with what differed; the exit status tells the Rust test.
"""

import base64
import json
import sys

import numpy as np
import openai

base_url, fixture_path = sys.argv[1], sys.argv[2]
fixture = json.load(open(fixture_path))
client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="not-checked", max_retries=0)


def cosine(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


cases = fixture["cases"]
texts = [case["text"] for case in cases]

for encoding in ["float", "base64"]:
    answer = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts, encoding_format=encoding)
    assert answer.model == "all-MiniLM-L6-v2", answer.model
    assert [d.index for d in answer.data] == list(range(len(texts)))
    for data, case in zip(answer.data, cases):
        vector = data.embedding
        if encoding == "base64":
            vector = np.frombuffer(base64.b64decode(vector), dtype="<f4")
        assert len(vector) == 384, len(vector)
        similarity = cosine(vector, case["embedding"])
        assert similarity >= 0.99999, (encoding, case["text"], similarity)
    tokens = sum(len(case["ids"]) for case in cases)
    assert answer.usage.prompt_tokens == tokens == answer.usage.total_tokens, answer.usage

# No encoding_format: the client asks for base64 and decodes it.
one = client.embeddings.create(model="text-embedding-3-small", input=texts[0])
assert len(one.data) == 1 and cosine(one.data[0].embedding, cases[0]["embedding"]) >= 0.99999

ids = cases[3]["ids"][1:-1]
by_ids = client.embeddings.create(model="all-MiniLM-L6-v2", input=[ids])
assert cosine(by_ids.data[0].embedding, cases[3]["embedding"]) >= 0.99999

for bad, param, expected in [([], "input", "at least one input"), ([texts[0], ""], "input[1]", "is empty")]:
    try:
        client.embeddings.create(model="all-MiniLM-L6-v2", input=bad)
    except openai.BadRequestError as error:
        assert error.status_code == 400, error.status_code
        assert expected in error.message and error.param == param, (error.message, error.param)
        assert error.type == "invalid_request_error" and error.code == "invalid-input", error.body
    else:
        raise AssertionError(f"{bad!r} was accepted")
try:
    client.embeddings.create(model="all-MiniLM-L6-v2", input="x", dimensions=1536)
except openai.BadRequestError as error:
    assert "1536 is not served" in error.message and error.param == "dimensions", error.body
else:
    raise AssertionError("dimensions=1536 was accepted")
print(f"openai {openai.__version__}: {len(texts)} texts, float and base64, token ids, errors")

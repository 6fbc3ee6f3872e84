"""Write the parity fixture of `services/image-orientation`: text pages rendered with Pillow
(DejaVu Sans), saved as PNG, JPEG and WebP, a blank page, and what the Python model
(`orientation.py`) answers for each.

Usage: python build_fixture.py --model DIR --out DIR
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from orientation import Model, decode, tensor

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
TEXT = (
    "Invoice 2026-117. The goods listed below were delivered on the third of March and are "
    "payable within thirty days of the date of this invoice. Please quote the invoice number "
    "with your payment. Questions about this invoice go to accounts at the address above. "
) * 12


def page(width: int, height: int, size: int) -> Image.Image:
    """A white page of black text, upright."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, size)
    y = size
    for line in textwrap.wrap(TEXT, width=int(width / (size * 0.55))):
        if y > height - 2 * size:
            break
        draw.text((size, y), line, fill="black", font=font)
        y += int(size * 1.4)
    return image


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

"""Text pages rendered with Pillow (DejaVu Sans, Debian's `fonts-dejavu-core`): what the
parity fixture (`build_fixture.py`) and the benchmark's images (`workloads.py`) are made of.
"""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
TEXT = (
    "Invoice 2026-117. The goods listed below were delivered on the third of March and are "
    "payable within thirty days of the date of this invoice. Please quote the invoice number "
    "with your payment. Questions about this invoice go to accounts at the address above. "
) * 12


def page(width: int, height: int, size: int, text: str = TEXT) -> Image.Image:
    """A white page of black text in `size`-pixel type, upright."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, size)
    y = size
    for line in textwrap.wrap(text, width=int(width / (size * 0.55))):
        if y > height - 2 * size:
            break
        draw.text((size, y), line, fill="black", font=font)
        y += int(size * 1.4)
    return image

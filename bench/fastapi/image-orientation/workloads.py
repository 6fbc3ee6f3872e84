"""The images `cargo xtask bench --service image-orientation` sends: text pages rendered in
three sizes and saved as JPEG (quality 90), as a scanner or phone would give them, each size a
workload of `{"image": "<base64>"}` bodies on `/v1/orientation`, one per line. Each workload
holds 8 pages: 2 texts in 4 orientations.

- `small`: 640 x 480, a thumbnail or a low-resolution scan;
- `a4`: 1240 x 1754, an A4 page scanned at 150 dpi;
- `photo`: 3000 x 4000, a 12-megapixel phone photo of a page.

Usage: python workloads.py --out DIR. Writes DIR/image-orientation-<name>.jsonl and prints one
line `WORKLOADS [{"name", "path", "bodies", "max_connections"}, ...]`.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
from pathlib import Path

from pages import TEXT, page

SIZES = [("small", 640, 480, 14, 64), ("a4", 1240, 1754, 24, 64), ("photo", 3000, 4000, 56, 64)]
TEXTS = [TEXT, " ".join(reversed(TEXT.split()))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    workloads = []
    for name, width, height, size, max_connections in SIZES:
        lines = []
        for text in TEXTS:
            upright = page(width, height, size, text)
            for angle in (0, 90, 180, 270):
                buffer = io.BytesIO()
                upright.rotate(angle, expand=True).save(buffer, format="JPEG", quality=90)
                image = base64.b64encode(buffer.getvalue()).decode()
                lines.append(json.dumps({"image": image}))
        bodies = args.out / f"image-orientation-{name}.jsonl"
        bodies.write_text("\n".join(lines) + "\n")
        workloads.append({
            "name": name,
            "path": "/v1/orientation",
            "bodies": str(bodies),
            "max_connections": max_connections,
        })
    print("WORKLOADS " + json.dumps(workloads), flush=True)


if __name__ == "__main__":
    main()

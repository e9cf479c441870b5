"""The demo's four real photos, copied once from scikit-image's bundled data (public domain or CC0).

    pip install scikit-image && python scripts/demo_photos.py --out src/dias/demo_photos

Each photo is scaled so that its shorter side is SHORT_SIDE pixels (Lanczos) and stored as a JPEG beside
`sources.json`, which names the photograph, its author and its licence as scikit-image documents them. The
package never imports scikit-image: the copies are what `dias demo` reads.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from PIL import Image

SHORT_SIDE = 256
JPEG_QUALITY = 90
PHOTOS = {  # name: (scikit-image loader, what it shows, author, licence, as scikit-image's docstring says)
    "astronaut": ("astronaut", "Eileen Collins, astronaut, before the STS-63 flight", "NASA",
                  "public domain (no known copyright restrictions)"),
    "coffee": ("coffee", "a cup of coffee on a saucer, courtesy of Pikolo Espresso Bar", "Rachel Michetti", "CC0"),
    "chelsea": ("chelsea", "Chelsea the cat", "Stefan van der Walt", "CC0"),
    "rocket": ("rocket", "launch of DSCOVR on a Falcon 9", "SpaceX", "public domain"),
}  # fmt: skip


def copy_photos(out: Path) -> dict[str, dict[str, str]]:
    import skimage.data

    out.mkdir(parents=True, exist_ok=True)
    sources = {}
    for name, (loader, what, author, licence) in PHOTOS.items():
        image = Image.fromarray(getattr(skimage.data, loader)())
        scale = SHORT_SIDE / min(image.size)
        resized = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        resized.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        (out / f"{name}.jpg").write_bytes(buffer.getvalue())
        sources[f"{name}.jpg"] = {
            "shows": what, "author": author, "licence": licence,
            "source": f"scikit-image {skimage.__version__}, skimage.data.{loader}()",
            "original_size": f"{image.width}x{image.height}", "stored_size": f"{resized.width}x{resized.height}",
        }  # fmt: skip
    (out / "sources.json").write_text(json.dumps(sources, indent=2) + "\n", encoding="utf-8")
    return sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("src/dias/demo_photos"))
    for name, item in copy_photos(parser.parse_args().out).items():
        print(name, item["stored_size"], item["licence"])


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Makes a long-image variant of an MVTec-layout dataset, to measure how fsad treats products whose
images are far from square (commutators, rails, fabric webs) on real defects: every image (and
mask) is cropped to its central horizontal strip of height H / ratio, full width. Anomalous test
images whose defect lies outside the strip (empty cropped mask) are dropped; images without a
mask are kept only when --keep-unmasked is given. Nothing is resized: the strips keep their pixels.

  /usr/bin/python3 tools/make_strip_dataset.py ../shared/data/mpdd-metal-plate /tmp/mpdd-strip --ratio 2.5
"""
import argparse
import pathlib
import sys

import numpy as np
from PIL import Image

EXTS = {".png", ".jpg", ".jpeg", ".bmp"}


def strip(img, ratio):
    w, h = img.size
    sh = max(1, round(h / ratio))
    top = (h - sh) // 2
    return img.crop((0, top, w, top + sh))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=pathlib.Path)
    ap.add_argument("dst", type=pathlib.Path)
    ap.add_argument("--ratio", type=float, default=2.5, help="width / height of the strips (square sources)")
    ap.add_argument("--keep-unmasked", action="store_true")
    a = ap.parse_args()
    kept = dropped = 0
    for cat in sorted(d for d in a.src.iterdir() if (d / "train").is_dir()):
        for p in sorted((cat / "train" / "good").iterdir()):
            if p.suffix.lower() in EXTS:
                out = a.dst / cat.name / "train" / "good" / p.name
                out.parent.mkdir(parents=True, exist_ok=True)
                strip(Image.open(p), a.ratio).save(out)
        for kind in sorted(d for d in (cat / "test").iterdir() if d.is_dir()):
            for p in sorted(kind.iterdir()):
                if p.suffix.lower() not in EXTS:
                    continue
                out = a.dst / cat.name / "test" / kind.name / p.name
                if kind.name != "good":
                    m = cat / "ground_truth" / kind.name / f"{p.stem}_mask.png"
                    if m.is_file():
                        mk = strip(Image.open(m), a.ratio)
                        if not np.asarray(mk.convert("L")).any():
                            dropped += 1
                            continue
                        mo = a.dst / cat.name / "ground_truth" / kind.name / m.name
                        mo.parent.mkdir(parents=True, exist_ok=True)
                        mk.save(mo)
                    elif not a.keep_unmasked:
                        dropped += 1
                        continue
                out.parent.mkdir(parents=True, exist_ok=True)
                strip(Image.open(p), a.ratio).save(out)
                kept += 1
    print(f"wrote {a.dst}: {kept} test images kept, {dropped} anomalous ones dropped (defect outside the strip)",
          file=sys.stderr)


if __name__ == "__main__":
    main()

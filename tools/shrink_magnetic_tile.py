#!/usr/bin/env python3
"""A small copy of the Magnetic Tile dataset for the GPU check (scripts/gpu-check.sh).

The device machine is reached with a copy of the working tree and at most 64 MiB of carried,
git-ignored files, and it has no ../shared: the dataset's 52 MB of photographs do not fit beside
the binaries' bundle. This writes every photograph (MT_<kind>/Imgs/*.jpg, the masks left out)
resized to SIZE x SIZE as an 8-bit grayscale PNG of the same stem, in the same layout, so that
`fsad eval --dataset magnetic-tile --res SIZE` runs on it unchanged: fsad's resize to the working
resolution is then the identity. The resize is Pillow's anti-aliased bilinear (torch's
interpolate(antialias=True)), fsad's own filter, so the images differ from what fsad computes
from the originals by the 8-bit rounding; the augmentations (random crops, rotations) start from
the smaller images, so AUROCs are close to, not equal to, those on the original files. It serves
paired comparisons on one machine (FP32 against TF32 and BF16; CPU against GPU), not the README's
tables.

Usage: python3 tools/shrink_magnetic_tile.py [--root ../shared/data/magnetic-tile] [--size 128]
       [--out .gpu/mt128]
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, read_image, write_png


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(here, "..", "..", "shared", "data", "magnetic-tile"))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--out", default=os.path.join(here, "..", ".gpu", "mt128"))
    a = ap.parse_args()
    if not os.path.isdir(os.path.join(a.root, "MT_Free", "Imgs")):
        sys.exit(f"{a.root}: not a Magnetic Tile folder (no MT_Free/Imgs)")
    tmp = a.out.rstrip("/") + ".tmp"
    if os.path.exists(tmp):
        import shutil
        shutil.rmtree(tmp)
    n = 0
    for kind in sorted(os.listdir(a.root)):
        src = os.path.join(a.root, kind, "Imgs")
        if not kind.startswith("MT_") or not os.path.isdir(src):
            continue
        dst = os.path.join(tmp, kind, "Imgs")
        os.makedirs(dst)
        for name in sorted(os.listdir(src)):
            if not name.endswith(".jpg"):
                continue
            x = read_image(os.path.join(src, name), ImageReadMode.GRAY).float()[None]
            y = F.interpolate(x, size=(a.size, a.size), mode="bilinear", align_corners=False, antialias=True)
            y = y[0].round().clamp(0, 255).to(torch.uint8)
            write_png(y, os.path.join(dst, name[:-4] + ".png"))
            n += 1
    if n == 0:
        sys.exit(f"{a.root}: no MT_<kind>/Imgs/*.jpg photographs")
    if os.path.exists(a.out):
        import shutil
        shutil.rmtree(a.out)
    os.rename(tmp, a.out)
    print(f"wrote {n} images of {a.size} x {a.size} px to {a.out}")


if __name__ == "__main__":
    main()

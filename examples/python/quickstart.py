#!/usr/bin/env python3
"""fsad from Python in a few cells: fit on good parts, score new ones, look at a map, save, load.

Runs on generated images (`fsad synth`, through `python -m fsad`), so it needs nothing but the
package: python3 examples/python/quickstart.py [WORK_DIR]. With ImageNet weights, pass
weights="auto" (or a path) below and the scores separate far better.
"""
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np

import fsad

# %% a generated product: 48 px metal with scratches, holes, stains and cracks
work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="fsad_quickstart_")
data = os.path.join(work, "ds")
if not os.path.isdir(data):
    subprocess.run([sys.executable, "-m", "fsad", "synth", "-o", data, "--size", "64", "--pool", "10",
                    "--test", "4", "--products", "metal"], check=True, stdout=subprocess.DEVNULL)
good = sorted(glob.glob(os.path.join(data, "metal/train/good/*.png")))[:5]
test = sorted(glob.glob(os.path.join(data, "metal/test/*/*.png")))

# %% fit on five good images (a small random backbone keeps this to seconds; see the docstring)
det = fsad.Detector(backbone="resnet18", width=0.25, weights="", resolution=64, scorer="auto")
det.fit(good, progress=lambda stage, done, total, loss: print(f"\r{stage} {done}/{total}   ", end=""))
print(f"\nfitted: {det!r}, threshold {det.threshold:.3f}")

# %% score the test images: paths (or numpy arrays)
scores, anomalous = det.decide(test)
for path, s, a in zip(test, scores, anomalous):
    print(f"{os.path.relpath(path, data):32s} {s:8.3f} {'ANOMALOUS' if a else ''}")

# %% an anomaly map of an in-memory image: a good part with a bright square pasted in
img = np.full((64, 64, 3), 128, np.uint8)
img[20:30, 35:45] = 255
(m,) = det.score_map([img])
y, x = np.unravel_index(np.argmax(m), m.shape)
print(f"map {m.shape}, hottest at row {y}, column {x}")

# %% save and load: the same scores
path = os.path.join(work, "metal.fsad")
det.save(path)
again = fsad.Detector.load(path).score(test)
print(f"saved {path}; loaded model scores the same: {np.allclose(again, scores, rtol=1e-5)}")

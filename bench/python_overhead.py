#!/usr/bin/env python3
"""Python vs C++ scoring time: the same model scores the same N in-memory RGB uint8 images in
batches, once through fsad::Detector::score (examples/score_timing.cpp, its own process) and once
through the Python package (numpy arrays -> C ABI -> Detector::score), alternating, best of REPS
each (the C++ process times two passes and keeps the faster, so that both sides are warm). Prints both times and the ratio Python / C++ (the issue's bar: within 5% at 1,000 images of
224 px). Usage (from a build tree with the Python module):
  PYTHONPATH=build/python python3 bench/python_overhead.py --timing build/examples/score_timing \
      [--n 1000] [--size 224] [--batch 32] [--reps 3] [--backbone mobilenetv2] [--width 1.0] [--threads 0]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np

import fsad

ap = argparse.ArgumentParser()
ap.add_argument("--timing", required=True, help="the score_timing binary (examples/score_timing.cpp)")
ap.add_argument("--n", type=int, default=1000)
ap.add_argument("--size", type=int, default=224)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--backbone", default="mobilenetv2")
ap.add_argument("--width", type=float, default=1.0)
ap.add_argument("--scorer", default="patch-gauss")
ap.add_argument("--threads", type=int, default=0)
a = ap.parse_args()


def images(n, size):  # the images score_timing.cpp makes
    y, x = np.mgrid[0:size, 0:size]
    c = np.arange(3)
    base = x[..., None] * 3 + y[..., None] * 5 + c * 70
    return [((base + 11 * i) % 256).astype(np.uint8) for i in range(n)]


det = fsad.Detector(backbone=a.backbone, width=a.width, weights="", resolution=a.size, scorer=a.scorer,
                    view="squash", threads=a.threads)
det.fit(images(5, a.size))
with tempfile.TemporaryDirectory() as tmp:
    model = os.path.join(tmp, "bench.fsad")
    det.save(model)
    det = fsad.Detector.load(model)
    imgs = images(a.n, a.size)
    cpp, py, cpp_cpu, py_cpu = [], [], [], []
    det.score(imgs[:a.batch])  # warm-up (the C++ side: the first of its two passes per run)
    for r in range(a.reps):
        out = subprocess.run([a.timing, model, str(a.n), str(a.batch), str(a.size), "2"], check=True,
                             capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(a.threads or os.cpu_count())))
        c = json.loads(out.stdout)
        cpp.append(c["seconds"])
        cpp_cpu.append(c["cpu_seconds"])
        t0, c0 = time.perf_counter(), time.process_time()
        total = 0.0
        for b in range(0, a.n, a.batch):
            total += float(det.score(imgs[b:b + a.batch]).sum())
        py.append(time.perf_counter() - t0)
        py_cpu.append(time.process_time() - c0)
        assert abs(total - c["checksum"]) <= 1e-3 * abs(total), (total, c["checksum"])  # the same scores (a sum)
        print(f"rep {r + 1}: C++ {cpp[-1]:.3f} s (CPU {cpp_cpu[-1]:.3f} s), Python {py[-1]:.3f} s (CPU {py_cpu[-1]:.3f} s)")
    best_c, best_p = min(cpp), min(py)
    # CPU time (all threads) resists other processes on a shared machine better than wall time
    print(f"CPU time, least of the reps: C++ {min(cpp_cpu):.3f} s, Python {min(py_cpu):.3f} s, "
          f"Python / C++ = {min(py_cpu) / min(cpp_cpu):.3f}")
    print(f"{a.n} images {a.size} px, {a.backbone} x{a.width}, {a.scorer}, batch {a.batch}: "
          f"C++ {best_c:.3f} s ({a.n / best_c:.1f} img/s), Python {best_p:.3f} s ({a.n / best_p:.1f} img/s), "
          f"Python / C++ = {best_p / best_c:.3f}")

#!/usr/bin/env python3
"""How often a single fit's threshold flags more than 5% of normal images (docs/results.md,
"Threshold calibration"), when the held-out scores are exactly log-normal.

fsad's patch-scorer threshold (Detector::fit, prediction_bound) from n held-out log-scores:
exp(m + t_{q, n-1} s sqrt(1 + 1/n)). The bound depends on the n shots drawn, so its false-positive
rate under the true distribution is random: this prints its mean and the chance that it exceeds
2% and 5%. Needs numpy and scipy (Debian: python3-numpy python3-scipy).
    tools/threshold_fpr.py [--q 0.99] [--draws 200000]
"""
import argparse

import numpy as np
from scipy import stats

ap = argparse.ArgumentParser()
ap.add_argument("--q", type=float, default=0.99)
ap.add_argument("--draws", type=int, default=200000)
ap.add_argument("--shots", type=int, nargs="+", default=[5, 10, 50])
a = ap.parse_args()
rng = np.random.default_rng(0)
for n in a.shots:
    t = stats.t.ppf(a.q, n - 1)
    x = rng.standard_normal((a.draws, n))  # log-scores, standardised: the rate is scale-free
    bound = x.mean(1) + t * x.std(1, ddof=1) * np.sqrt(1 + 1 / n)
    fpr = stats.norm.sf(bound)
    print(f"{n:3d} shots: mean FPR {100 * fpr.mean():.2f}%, P(FPR > 2%) {100 * (fpr > 0.02).mean():.1f}%, "
          f"P(FPR > 5%) {100 * (fpr > 0.05).mean():.1f}%")

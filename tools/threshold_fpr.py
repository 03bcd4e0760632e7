#!/usr/bin/env python3
"""How often a single fit's threshold flags more than 5% of normal images (docs/results.md,
"Threshold calibration"), when the held-out scores are exactly log-normal.

fsad's patch-scorer threshold (Detector::fit, prediction_bound) from n held-out log-scores with mean
m and sample deviation s_n: exp(m + t_{q, nu} s sqrt(1 + 1/n)), s^2 = ((n - 1) s_n^2 + w s0^2) / nu,
nu = n - 1 + w (the spread prior: w pseudo-scores of deviation s0; w = 0 is no prior). The bound
depends on the n shots drawn, so its false-positive rate under the true distribution is random:
this prints its mean and the chance that it exceeds 2% and 5%, for log-scores of true deviation
--true-spread. Needs numpy and scipy (Debian: python3-numpy python3-scipy).
    tools/threshold_fpr.py [--q 0.99] [--prior-spread 0.15 --prior-weight 10] [--true-spread 0.15]
"""
import argparse

import numpy as np
from scipy import stats

ap = argparse.ArgumentParser()
ap.add_argument("--q", type=float, default=0.99)
ap.add_argument("--prior-spread", type=float, default=0.0)
ap.add_argument("--prior-weight", type=float, default=0.0)
ap.add_argument("--true-spread", type=float, nargs="+", default=[0.15])
ap.add_argument("--draws", type=int, default=200000)
ap.add_argument("--shots", type=int, nargs="+", default=[5, 10, 50])
a = ap.parse_args()
rng = np.random.default_rng(0)
for sigma in a.true_spread:
    for n in a.shots:
        nu = n - 1 + a.prior_weight
        t = stats.t.ppf(a.q, nu)
        x = sigma * rng.standard_normal((a.draws, n))  # log-scores (the mean does not matter)
        s = np.sqrt(((n - 1) * x.var(1, ddof=1) + a.prior_weight * a.prior_spread ** 2) / nu)
        fpr = stats.norm.sf((x.mean(1) + t * s * np.sqrt(1 + 1 / n)) / sigma)
        print(f"true spread {sigma:.2f}, {n:3d} shots: mean FPR {100 * fpr.mean():.2f}%, "
              f"P(FPR > 2%) {100 * (fpr > 0.02).mean():.1f}%, P(FPR > 5%) {100 * (fpr > 0.05).mean():.1f}%")

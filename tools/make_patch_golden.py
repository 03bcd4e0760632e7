#!/usr/bin/python3
"""Golden fixture for fsad's patch scorers (tests/test_patch.cpp): patch features, the patch
Gaussian's and the patch kNN's scores and the anomaly maps, computed with PyTorch, scikit-learn
and SciPy exactly as ../shared/peers/ad_reference.py defines them:

  patch features  F.avg_pool2d(k=3, stride=1, padding=1) on a stride-8 and a stride-16 map, the
                  second F.interpolate(bilinear, align_corners=False) to the first's grid, concat
  patch-gauss     sklearn LedoitWolf on the shots' patch rows; Mahalanobis distance per patch
  patch-knn       Euclidean distance to the nearest shot patch
  anomaly map     patch scores F.interpolate(bilinear, align_corners=False) to the view, then
                  scipy.ndimage.gaussian_filter(sigma=4) ('reflect', truncate 4)

Stage maps are random (odd, non-square grids: the stride-16 grid is the stride-8 one halved and
rounded up, as a backbone makes it). Every result is stored in float64 with "torch32dev.<key>",
float32's own deviation from it (tests/golden.hpp explains the tolerance).

Run with Debian's python3-torch, python3-sklearn, python3-scipy:
  /usr/bin/python3 tools/make_patch_golden.py tests/data/golden_patch.safetensors
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from sklearn.covariance import LedoitWolf

from make_golden import save

SIGMA = 4.0


def patch_features(f8, f16):
    a = F.avg_pool2d(f8, 3, stride=1, padding=1)
    b = F.avg_pool2d(f16, 3, stride=1, padding=1)
    b = F.interpolate(b, size=a.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([a, b], dim=1)


def rows(f):
    return f.flatten(2).transpose(1, 2).reshape(-1, f.shape[1])


def maps(scores, grid, view):
    s = scores.reshape(-1, 1, *grid)
    up = F.interpolate(s, size=view, mode="bilinear", align_corners=False)[:, 0].numpy()
    return torch.from_numpy(gaussian_filter(up.astype(np.float64), sigma=(0, SIGMA, SIGMA)))


def compute(dtype, maps8, maps16, shot8, shot16, view):
    t = lambda x: x.to(dtype)
    feat = patch_features(t(maps8), t(maps16))
    shot = rows(patch_features(t(shot8), t(shot16)))
    q = rows(feat)
    lw = LedoitWolf().fit(shot.double().numpy())
    prec = torch.from_numpy(lw.precision_).to(dtype)
    d = q - torch.from_numpy(lw.location_).to(dtype)
    gauss = ((d @ prec) * d).sum(1).clamp_min(0).sqrt()
    knn = torch.cdist(q, shot).min(1).values
    grid = feat.shape[-2:]
    return {"patch.features": feat, "gauss.scores": gauss, "knn.scores": knn,
            "map.gauss": maps(gauss.double(), grid, view), "map.knn": maps(knn.double(), grid, view)}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/golden_patch.safetensors"
    g = torch.Generator().manual_seed(0)
    h8, w8, c8, c16 = 11, 13, 8, 12
    h16, w16 = (h8 + 1) // 2, (w8 + 1) // 2
    view = (h8 * 8, w8 * 8)
    r = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64) * 2.0  # post-ReLU-like, non-negative
    maps8, maps16 = r(2, c8, h8, w8), r(2, c16, h16, w16)
    shot8, shot16 = r(3, c8, h8, w8), r(3, c16, h16, w16)
    maps8[1, :, 4:7, 5:9] += 3.0  # a "defect" on image 1: far from the shots in both scorers
    ref = compute(torch.float64, maps8, maps16, shot8, shot16, view)
    f32 = compute(torch.float32, maps8, maps16, shot8, shot16, view)
    tensors = {"input.maps8": maps8, "input.maps16": maps16, "input.shot8": shot8, "input.shot16": shot16}
    for k, v in ref.items():
        tensors[k] = v
        tensors["torch32dev." + k] = torch.tensor((f32[k].double() - v).abs().max().item())
    save(out, tensors, {"generator": "tools/make_patch_golden.py", "sigma": str(SIGMA),
                        "view": f"{view[0]}x{view[1]}"})
    print(f"wrote {out}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in sorted(tensors.items()) if "torch32dev" not in k))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Writes tests/data/golden_method.safetensors with PyTorch, scikit-learn and NumPy (Debian's
python3-torch, python3-sklearn): the method's losses and their gradients on fixed features, the
Ledoit-Wolf density (mean, covariance, shrinkage, Mahalanobis scores) and AUROC with ties.

    /usr/bin/python3 tools/make_method_golden.py tests/data
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import save  # noqa: E402


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data"
    g = torch.Generator().manual_seed(5)
    t = {}
    N, D = 6, 16
    for k in ("p1", "z2", "p2", "z1", "f1", "fh1", "fn", "f", "centre"):
        shape = (D,) if k == "centre" else (N, D)
        t["loss.in." + k] = torch.randn(shape, generator=g).double()  # float32 values, float64 maths
    perm = torch.randperm(N, generator=g)
    t["loss.perm"] = perm.double()
    v = {k[len("loss.in."):]: t[k].clone().requires_grad_(True) for k in t if k.startswith("loss.in.")}
    cos = lambda a, b: F.cosine_similarity(a, b, dim=1, eps=1e-8)  # noqa: E731
    losses = {
        "con": -(cos(v["p1"], v["z2"].detach()) + cos(v["p2"], v["z1"].detach())).sum() / (2 * N),
        "pp": -(cos(v["f1"], v["fh1"].detach()[perm]) + cos(v["f1"][perm], v["fh1"].detach())).sum() / (2 * N),
        "np": cos(v["fh1"].detach(), v["fn"]).sum() / N,
        "fc": ((v["f"] - v["centre"].detach()) ** 2).sum() / N,
    }
    for name, L in losses.items():
        for x in v.values():
            x.grad = None
        L.backward()
        t[f"loss.{name}.value"] = L.detach().reshape(1)
        for k, x in v.items():
            if x.grad is not None:
                t[f"loss.{name}.grad.{k}"] = x.grad.clone()

    rng = np.random.default_rng(3)
    for n, d in ((10, 64), (50, 64), (40, 512), (10, 1)):
        X = rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, d) + rng.standard_normal(d)
        Y = rng.standard_normal((7, d)) * 1.5
        X, Y = X.astype(np.float32).astype(np.float64), Y.astype(np.float32).astype(np.float64)  # as stored
        lw = LedoitWolf().fit(X)
        diff = Y - lw.location_
        maha = np.sqrt(np.einsum("ij,ij->i", diff @ np.linalg.inv(lw.covariance_), diff))
        key = f"density.n{n}_d{d}"
        t[key + ".X"] = torch.from_numpy(X)
        t[key + ".Y"] = torch.from_numpy(Y)
        t[key + ".mean"] = torch.from_numpy(lw.location_)
        t[key + ".shrinkage"] = torch.tensor([lw.shrinkage_])
        t[key + ".scores"] = torch.from_numpy(maha)

    s = np.round(rng.standard_normal(300) * 2) / 2  # many ties
    y = (rng.uniform(size=300) < 0.3).astype(np.int64)
    s[y == 1] += 0.5
    t["auroc.scores"] = torch.from_numpy(s)
    t["auroc.labels"] = torch.from_numpy(y).double()
    t["auroc.value"] = torch.tensor([roc_auc_score(y, s)])
    path = os.path.join(out, "golden_method.safetensors")
    save(path, t, {"torch": torch.__version__})
    print(f"wrote {path}: {len(t)} tensors")


if __name__ == "__main__":
    main()

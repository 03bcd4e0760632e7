#!/usr/bin/python3
"""Writes tests/data/golden_byol.safetensors: two full fine-tuning steps of the method (BYOL +
L_pp + L_np, Adam, EMA target) of a width-1/8 ResNet18 with small heads on fixed views, with
PyTorch (Debian's python3-torch). Records the initial online parameters and buffers, per step
the loss values, the first step's gradients of every online parameter, and after the second
step the online parameters and the target parameters and buffers. As tools/make_golden.py, results are float64
from the float32 initial state, with PyTorch's own float32 deviation ("torch32dev.*").

    /usr/bin/python3 tools/make_byol_golden.py tests/data
"""
import copy
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import ResNet18W, perturb_bn, save  # noqa: E402

B, RES, HIDDEN, PROJ = 4, 64, 32, 16  # 64 px: layer4 maps are 2x2, 16 values per BN channel
LR, EMA, L_PP, L_NP = 1e-3, 0.99, 0.8, 0.6


def mlp(i, h, o):
    return nn.Sequential(nn.Linear(i, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, o))


class Online(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = ResNet18W(0.125)
        self.projector = mlp(64, HIDDEN, PROJ)
        self.predictor = mlp(PROJ, HIDDEN, PROJ)


class Target(nn.Module):
    def __init__(self, online):
        super().__init__()
        self.backbone = copy.deepcopy(online.backbone)
        self.projector = copy.deepcopy(online.projector)


def state(m, prefix):
    out = {prefix + "param." + k: v.detach().clone() for k, v in m.named_parameters()}
    out.update({prefix + "buffer." + k: v.detach().clone() for k, v in m.named_buffers()
                if not k.endswith("num_batches_tracked")})
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/data"
    torch.manual_seed(0)
    online0 = Online()
    perturb_bn(online0, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    views = [torch.randn(B, 3, RES, RES, generator=g) for _ in range(6)]  # x1, x2, xn for 2 steps
    perms = [torch.randperm(B, generator=g) for _ in range(2)]
    t = {"x.%d.%d" % (s, k): views[3 * s + k] for s in range(2) for k in range(3)}
    t.update({"perm.%d" % s: perms[s].double() for s in range(2)})
    t.update(state(online0, "init."))

    def run(dtype):
        online = copy.deepcopy(online0).to(dtype).train()
        target = Target(online).train()
        for p in target.parameters():
            p.requires_grad_(False)
        opt = torch.optim.Adam(online.parameters(), lr=LR, betas=(0.9, 0.99), eps=1e-8)
        res = {}
        cos = lambda a, b: F.cosine_similarity(a, b, dim=1, eps=1e-8)  # noqa: E731
        for s in range(2):
            x1, x2, xn = (views[3 * s + k].to(dtype) for k in range(3))
            perm = perms[s]
            opt.zero_grad()
            f1, f2 = online.backbone(x1), online.backbone(x2)
            with torch.no_grad():
                fh1, fh2 = target.backbone(x1), target.backbone(x2)
                zh1, zh2 = target.projector(fh1), target.projector(fh2)
            p1 = online.predictor(online.projector(f1))
            p2 = online.predictor(online.projector(f2))
            con = -(cos(p1, zh2) + cos(p2, zh1)).sum() / (2 * B)
            pp = -(cos(f1, fh1[perm]) + cos(f1[perm], fh1)).sum() / (2 * B)
            fn = online.backbone(xn)
            npl = cos(fh1, fn).sum() / B
            loss = con + L_PP * pp + L_NP * npl
            loss.backward()
            res["step%d.loss" % s] = torch.stack([loss, con, pp, npl]).detach()
            if s == 0:
                res.update({"step0.grad." + k: v.grad.detach().clone() for k, v in online.named_parameters()})
            opt.step()
            with torch.no_grad():
                for a, b in zip(target.parameters(), list(online.backbone.parameters()) + list(online.projector.parameters())):
                    a.mul_(EMA).add_(b, alpha=1 - EMA)
                tb = [v for k, v in target.named_buffers() if not k.endswith("num_batches_tracked")]
                ob = [v for k, v in list(online.backbone.named_buffers()) + list(online.projector.named_buffers())
                      if not k.endswith("num_batches_tracked")]
                for a, b in zip(tb, ob):
                    a.mul_(EMA).add_(b, alpha=1 - EMA)
        res.update({"step1.online.param." + k: v.detach().clone() for k, v in online.named_parameters()})
        res.update(state(target, "step1.target."))
        return {k: v.double() for k, v in res.items()}

    ref = run(torch.float64)
    devs = {k: torch.zeros(1, dtype=torch.float64) for k in ref}
    for threads, mkldnn in ((1, True), (2, True), (1, False)):
        torch.set_num_threads(threads)
        with torch.backends.mkldnn.flags(enabled=mkldnn):
            f32 = run(torch.float32)
        for k in ref:
            devs[k] = torch.maximum(devs[k], (f32[k] - ref[k]).abs().max().reshape(1))
    for k, v in ref.items():
        t[k] = v
        t["torch32dev." + k] = devs[k]
    path = os.path.join(out_dir, "golden_byol.safetensors")
    save(path, t, {"batch": str(B), "res": str(RES), "hidden": str(HIDDEN), "projection": str(PROJ), "lr": str(LR),
                   "ema": str(EMA), "lambda_pp": str(L_PP), "lambda_np": str(L_NP), "torch": torch.__version__})
    print(f"wrote {path}: {len(t)} tensors, {sum(v.numel() for v in t.values())} values")


if __name__ == "__main__":
    main()

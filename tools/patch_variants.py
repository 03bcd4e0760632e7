#!/usr/bin/python3
"""Patch-feature variants screened in PyTorch before they are built into fsad (docs/results.md:
"A resolution proportional to the images", "Pixel AUROC by anomaly kind").

It reuses ../shared/peers/ad_reference.py (the PyTorch reference: the same weights, image loading,
shot draws and patch-gauss scorer) and adds what fsad does by default: the three mirror images of
every shot in the fit (--flips on). Each variant changes the patch features or the view; several
variants' maps can be summed (each divided by the mean of the shots' own map maxima). Prints image
AUROC, pixel AUROC, and each anomaly kind's image and pixel AUROC (the kind's defect pixels against
every normal pixel), means over seeds 0-2 at 5 and 10 shots.

  DS=mt|mpdd|bottle RES=224 GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296 \
    /usr/bin/python3 tools/patch_variants.py '{"base": {}, "r160": {"res": 160}, "sum": {"combo": [{}, {"res": 160}]}}'

Variant keys: res (view side, px), pool / pool8 / pool16 (local averaging window of both taps or
of one), gray (weight of two extra features: the patch's mean intensity and its deviation), flips
(false: no mirror images), combo (a list of variants whose maps are summed), op ("max" instead of
the sum). Features are cached per dataset and resolution in $CACHE (default /tmp/fsad-variants).
Needs ../shared (data, weights, peers) and Debian's python3-torch, -torchvision, -sklearn, -scipy.
"""
import json
import os
import pathlib
import random
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
SHARED = HERE / ".." / ".." / "shared"
sys.path.insert(0, str(SHARED / "peers"))
import ad_reference as R  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from sklearn.covariance import LedoitWolf  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
CACHE = pathlib.Path(os.environ.get("CACHE", "/tmp/fsad-variants"))
CACHE.mkdir(parents=True, exist_ok=True)
DSN = os.environ.get("DS", "mt")
res = int(os.environ.get("RES", "224"))
if DSN == "mt":
    root = SHARED / "data" / "magnetic-tile"
    pool, pool_test, fixed = R.load_layout("magnetic-tile", root, None)
    kind = ["good"] * len(pool) + [p.parent.parent.name[3:] for p, _, _ in fixed]
else:
    root = SHARED / "data" / {"mpdd": "mpdd-metal-plate", "bottle": "mvtec-bottle"}[DSN]
    pool, pool_test, fixed = R.load_layout("mvtec", root, {"mpdd": "metal_plate", "bottle": "bottle"}[DSN])
    kind = ["good"] * len(pool) + [p.parent.name for p, _, _ in fixed]
KINDS = sorted({k for k in kind if k != "good"})
paths = list(pool) + [p for p, _, _ in fixed]
label = [0] * len(pool) + [y for _, y, _ in fixed]
maskp = [None] * len(pool) + [m for _, _, m in fixed]
model = R.load_model(R.DEFAULT_WEIGHTS)


def raw(imgs):
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)
    h = (x - R.MEAN) / R.STD
    out = {}
    with torch.no_grad():
        for j, layer in enumerate(model.features):
            h = layer(h)
            if j == R.STRIDE8_LAYER: out['f8'] = h
            elif j == R.STRIDE16_LAYER: out['f16'] = h; break
    out['gray'] = F.avg_pool2d(x.mean(1, keepdim=True), 8)  # [b,1,28,28]
    out['gray2'] = F.avg_pool2d((x.mean(1, keepdim=True))**2, 8)
    return out

def extract(imgs_fn, idx):
    acc = {}
    for i in range(0, len(idx), 32):
        o = raw([imgs_fn(j) for j in idx[i:i+32]])
        for k, v in o.items(): acc.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in acc.items()}

def load_D(r):
    c = CACHE / f"{DSN}-{r}.pt"
    if c.exists(): return torch.load(c)
    D = {'main': extract(lambda j: R.load_image(paths[j], r), list(range(len(paths))))}
    sh = sorted({pool.index(p) for s in range(3) for k in (5, 10) for p in random.Random(s).sample(pool, k)})
    D['shot_ids'] = sh
    for name, fl in (('h', lambda a: a[:, ::-1]), ('v', lambda a: a[::-1]), ('hv', lambda a: a[::-1, ::-1])):
        D[name] = extract(lambda j: np.ascontiguousarray(fl(R.load_image(paths[j], r))), sh)
    torch.save(D, c)
    return D
t0 = time.time()
DS = {res: load_D(res)}
D = DS[res]
print('features', time.time() - t0, flush=True)
masks = {i: R.load_mask(maskp[i], res) for i in range(len(paths)) if maskp[i] is not None}

def feats(d, variant):
    f8, f16 = d['f8'], d['f16']
    k = variant.get('pool', 3)
    k8, k16 = variant.get('pool8', k), variant.get('pool16', k)
    f8 = F.avg_pool2d(f8, k8, stride=1, padding=k8 // 2)
    f16 = F.avg_pool2d(f16, k16, stride=1, padding=k16 // 2)
    f16 = F.interpolate(f16, size=f8.shape[-2:], mode='bilinear', align_corners=False)
    parts = [f8, f16]
    if variant.get('gray'):
        g = F.avg_pool2d(d['gray'], 3, stride=1, padding=1)
        g2 = F.avg_pool2d(d['gray2'], 3, stride=1, padding=1)
        sd = (g2 - g * g).clamp_min(0).sqrt()
        w = variant['gray']
        parts += [w * g, w * sd]
    p = torch.cat(parts, 1)
    return p.flatten(2).transpose(1, 2).contiguous()

def maps_of(variant, shot, tid):
    r = variant.get('res', res)
    if r not in DS: DS[r] = load_D(r)
    D = DS[r]
    Pm = feats(D['main'], variant)
    Pf = {n: feats(D[n], variant) for n in ('h', 'v', 'hv')}
    pos = {j: i for i, j in enumerate(D['shot_ids'])}
    X = [Pm[shot]] + ([Pf[n][[pos[j] for j in shot]] for n in ('h', 'v', 'hv')] if variant.get('flips', True) else [])
    X = torch.cat(X).reshape(-1, Pm.shape[-1]).double().numpy()
    lw = LedoitWolf().fit(X)
    def mp(ids):
        ps = []
        for i in range(0, len(ids), 64):
            ps += list(R.mahalanobis(lw, Pm[ids[i:i+64]].double().numpy().reshape(-1, Pm.shape[-1])).reshape(-1, Pm.shape[1]))
        g = (r + 7) // 8
        m = np.concatenate([R.anomaly_maps(ps[i:i+64], (g, g), r) for i in range(0, len(ps), 64)])
        if r != res:
            m = F.interpolate(torch.from_numpy(m)[:, None], size=(res, res), mode='bilinear', align_corners=False)[:, 0].numpy()
        return m
    own = mp(shot).reshape(len(shot), -1).max(1).mean()
    return mp(tid) / own

def run(variant, seeds=(0, 1, 2), shots=(5, 10)):
    out = {}
    for k in shots:
        for s in seeds:
            shot = [pool.index(p) for p in random.Random(s).sample(pool, k)]
            tid = ([i for i in range(len(pool)) if i not in shot] if pool_test else []) + list(range(len(pool), len(paths)))
            if 'combo' in variant:
                ms = [maps_of(v, shot, tid) for v in variant['combo']]
                maps = np.maximum(*ms) if variant.get('op') == 'max' else sum(ms)
            else:
                maps = maps_of(variant, shot, tid)
            y = np.array([label[i] for i in tid])
            img = maps.reshape(len(tid), -1).max(1)
            r = {'img': 100 * roc_auc_score(y, img)}
            if not masks:
                out[(k, s)] = r
                continue
            neg = np.concatenate([maps[j].ravel() if tid[j] not in masks else maps[j][~masks[tid[j]]] for j in range(len(tid))])
            negs = np.sort(neg)
            def au(pos_):
                pos_ = np.sort(pos_); lo = np.searchsorted(negs, pos_, 'left'); hi = np.searchsorted(negs, pos_, 'right')
                return 100 * float((lo.sum(dtype=np.float64) + 0.5 * (hi - lo).sum(dtype=np.float64)) / (len(pos_) * len(negs)))
            allpos = []
            for kd in KINDS:
                js = [j for j in range(len(tid)) if kind[tid[j]] == kd and tid[j] in masks]
                pp = np.concatenate([maps[j][masks[tid[j]]] for j in js]); allpos.append(pp)
                r['px_' + kd] = au(pp)
                yy = np.array([label[tid[j]] for j in range(len(tid)) if kind[tid[j]] in ('good', kd)])
                ss = np.array([img[j] for j in range(len(tid)) if kind[tid[j]] in ('good', kd)])
                r['im_' + kd] = 100 * roc_auc_score(yy, ss)
            r['px'] = au(np.concatenate(allpos))
            out[(k, s)] = r
    return out

def summary(name, out):
    for k in sorted({k for k, _ in out}):
        rs = [v for (kk, s), v in out.items() if kk == k]
        keys = rs[0].keys()
        print(name, k, ' '.join(f"{key}={np.mean([r[key] for r in rs]):.2f}" for key in keys), flush=True)

variants = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {'base': {}}
for name, v in variants.items():
    summary(name, run(v))

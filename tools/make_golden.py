#!/usr/bin/python3
"""Writes the golden fixtures of tests/test_golden.cpp with PyTorch (Debian's python3-torch).

For a width-reduced ResNet18 and MobileNetV2 (torchvision architectures and key names, random
weights, BatchNorm statistics made non-trivial) it records, in train mode: the input, every
parameter and buffer, the pooled features, the scalar loss sum(feature * R), every parameter
gradient, the parameters and buffers after 3 Adam steps (forward, backward, step), and the
eval-mode features after those steps. All results are computed in float64 from the float32
initial state (the reference), and for each result the fixture also stores how far PyTorch's
own float32 runs land from it ("torch32dev.*": the largest deviation over runs with 1 and
2 threads, with oneDNN convolutions on and off, and with the initial parameters perturbed by
one float32 ulp): the C++ test must be about as close (rounding
noise is large where a true value is ~0, e.g. the bias gradient of a BatchNorm whose output is
renormalised by the next train-mode BatchNorm). Fixtures are small safetensors files (F32).

Run from the project root:  /usr/bin/python3 tools/make_golden.py tests/data
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torchvision

torch.manual_seed(0)
torch.set_num_threads(1)


def save(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k].detach().cpu().numpy().astype("<f4"))
        b = a.tobytes()
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (len(h) + 8) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(tmp, path)


class BasicBlock(nn.Module):
    def __init__(self, inp, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inp != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inp, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return torch.relu(h + (self.downsample(x) if self.downsample is not None else x))


class ResNet18W(nn.Module):
    """torchvision's resnet18 with every width multiplied by `w` (same key names)."""

    def __init__(self, w):
        super().__init__()
        c = [max(1, round(64 * w * 2 ** i)) for i in range(4)]
        self.conv1 = nn.Conv2d(3, c[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inp = c[0]
        for i in range(4):
            blocks = [BasicBlock(inp, c[i], 2 if i > 0 else 1), BasicBlock(c[i], c[i], 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inp = c[i]

    def forward(self, x):
        h = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for i in range(4):
            h = getattr(self, f"layer{i + 1}")(h)
        return h.mean((2, 3))


class MobileNetV2W(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.features = torchvision.models.mobilenet_v2(weights=None, width_mult=w).features

    def forward(self, x):
        return self.features(x).mean((2, 3))


def perturb_bn(model, g):
    """Random affine parameters and running statistics, so eval mode is not the identity."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.2, generator=g)
                m.running_mean.normal_(0.0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)


def record(name, model, x, out_dir, meta):
    g = torch.Generator().manual_seed(1)
    perturb_bn(model, g)
    params = dict(model.named_parameters())
    buffers = {k: v for k, v in model.named_buffers() if not k.endswith("num_batches_tracked")}
    t = {"input": x}
    t.update({"param." + k: v.detach().clone() for k, v in params.items()})
    t.update({"buffer." + k: v.detach().clone() for k, v in buffers.items()})
    with torch.no_grad():
        R = torch.randn(model(x[:1]).shape[1:], generator=g).expand(x.shape[0], -1).clone()
        R += torch.randn(R.shape, generator=g)
    t["R"] = R

    def run(dtype, jitter=None):
        """From the initial state: train-mode forward, loss, gradients; then 3 Adam steps and
        the eval-mode features after them. Everything in `dtype`. `jitter` (a seed) perturbs the
        initial parameters by about one float32 ulp, as a different rounding order would."""
        def reset():
            jg = torch.Generator().manual_seed(jitter) if jitter is not None else None
            for k, v in params.items():
                p0 = t["param." + k].to(dtype).clone()
                if jg is not None:
                    p0 *= 1 + 2.0 ** -23 * (2 * torch.rand(p0.shape, generator=jg, dtype=dtype) - 1)
                v.data = p0
                v.grad = None
            for k, v in buffers.items():
                v.data = t["buffer." + k].to(dtype).clone()
        xd, Rd = x.to(dtype), R.to(dtype)
        out = {}
        reset()
        model.train()
        feat = model(xd)
        loss = (feat * Rd).sum()
        loss.backward()
        out["train.feature"] = feat.detach()
        out["train.loss"] = loss.detach().reshape(1)
        out.update({"grad." + k: v.grad.detach().clone() for k, v in params.items()})
        reset()
        opt = torch.optim.Adam(model.parameters(), lr=float(meta["lr"]), betas=(0.9, 0.99), eps=1e-8)
        for _ in range(3):
            opt.zero_grad()
            (model(xd) * Rd).sum().backward()
            opt.step()
        out.update({"adam3.param." + k: v.detach().clone() for k, v in params.items()})
        out.update({"adam3.buffer." + k: v.detach().clone() for k, v in buffers.items()})
        model.eval()
        with torch.no_grad():
            out["eval.feature"] = model(xd)
        return {k: v.double() for k, v in out.items()}

    ref = run(torch.float64)
    # float32 noise floor: the largest deviation over float32 runs with different summation
    # orders (1 or 2 threads, oneDNN convolutions on or off) or ulp-perturbed initial values.
    devs = {k: torch.zeros(1, dtype=torch.float64) for k in ref}
    for threads, mkldnn, jitter in ((1, True, None), (2, True, None), (1, False, None), (1, True, 11), (1, True, 12)):
        torch.set_num_threads(threads)
        with torch.backends.mkldnn.flags(enabled=mkldnn):
            f32 = run(torch.float32, jitter)
        for k in ref:
            devs[k] = torch.maximum(devs[k], (f32[k] - ref[k]).abs().max().reshape(1))
    torch.set_num_threads(1)
    for k, v in ref.items():
        t[k] = v
        t["torch32dev." + k] = devs[k]
    path = os.path.join(out_dir, f"golden_{name}.safetensors")
    save(path, t, meta)
    print(f"wrote {path}: {len(t)} tensors, {sum(v.numel() for v in t.values())} values")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/data"
    os.makedirs(out_dir, exist_ok=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    record("resnet18_w0125", ResNet18W(0.125), x,
           out_dir, {"backbone": "resnet18", "width": "0.125", "lr": "0.001", "torch": torch.__version__})
    record("mobilenetv2_w025", MobileNetV2W(0.25), x,
           out_dir, {"backbone": "mobilenetv2", "width": "0.25", "lr": "0.001", "torch": torch.__version__})


if __name__ == "__main__":
    main()

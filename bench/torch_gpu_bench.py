#!/usr/bin/env python3
"""PyTorch GPU peer of bench/bench_cuda.cpp: the same ResNet18 convolution shapes (batch 64),
forward and backward (data + filter), with cudnn.benchmark on, in fp32 (TF32 off), tf32 (TF32 on)
and bf16 (bfloat16 tensors); the fine-tuning step and feature extraction in fp32 and bf16
(torch.autocast to bfloat16: convolutions and linear layers in bfloat16, FP32 master weights), tf32
(TF32 on), each in NCHW and channels_last memory format. Timed with CUDA events after warm-up.
Prints one line per case; bench/compare_gpu.py reads them."""
import argparse
import contextlib

import torch

SHAPES = [("conv1", 3, 64, 224, 7, 2, 3), ("layer1", 64, 64, 56, 3, 1, 1), ("layer2.0.conv1", 64, 128, 56, 3, 2, 1),
          ("layer2.ds", 64, 128, 56, 1, 2, 0), ("layer2", 128, 128, 28, 3, 1, 1), ("layer3.0.conv1", 128, 256, 28, 3, 2, 1),
          ("layer3.ds", 128, 256, 28, 1, 2, 0), ("layer3", 256, 256, 14, 3, 1, 1), ("layer4.0.conv1", 256, 512, 14, 3, 2, 1),
          ("layer4.ds", 256, 512, 14, 1, 2, 0), ("layer4", 512, 512, 7, 3, 1, 1)]


def timed(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(reps):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / reps


def mlp(i, h, o):
    nn = torch.nn
    return nn.Sequential(nn.Linear(i, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Linear(h, o))


def autocast(bf16):
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def byol_step_bench(res, batch, reps, bf16=False, tag="fp32", layout="nchw"):
    """The fine-tuning step of ../shared/peers/torch_cpu_bench.py (BYOL + L_pp + L_np, Adam, EMA)
    on the GPU, eager mode; bf16: its forward passes under autocast (the losses in float32)."""
    import torchvision
    F = torch.nn.functional
    dev = torch.device("cuda")
    torch.manual_seed(0)
    bb = torchvision.models.resnet18()
    bb.fc = torch.nn.Identity()
    online = torch.nn.ModuleDict({"backbone": bb, "projector": mlp(512, 4096, 256), "predictor": mlp(256, 4096, 256)}).to(dev).train()
    tb = torchvision.models.resnet18()
    tb.fc = torch.nn.Identity()
    target = torch.nn.ModuleDict({"backbone": tb, "projector": mlp(512, 4096, 256)}).to(dev).train()
    target.backbone.load_state_dict(online.backbone.state_dict())
    target.projector.load_state_dict(online.projector.state_dict())
    for p in target.parameters():
        p.requires_grad_(False)
    mf = torch.channels_last if layout == "cl" else torch.contiguous_format
    online, target = online.to(memory_format=mf), target.to(memory_format=mf)
    opt = torch.optim.Adam(online.parameters(), lr=3e-4)
    on_params = list(online.backbone.parameters()) + list(online.projector.parameters())
    tg_params = list(target.backbone.parameters()) + list(target.projector.parameters())
    v1, v2, vn = (torch.randn(batch, 3, res, res, device=dev).contiguous(memory_format=mf) for _ in range(3))
    perm = torch.roll(torch.arange(batch, device=dev), -1)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(bf16):
            h1, h2, hn = online.backbone(v1), online.backbone(v2), online.backbone(vn)
            p1 = online.predictor(online.projector(h1))
            p2 = online.predictor(online.projector(h2))
            with torch.no_grad():
                th1, th2 = target.backbone(v1), target.backbone(v2)
                tz1, tz2 = target.projector(th1), target.projector(th2)
        h1, h2, hn, p1, p2, th1, th2, tz1, tz2 = (t.float() for t in (h1, h2, hn, p1, p2, th1, th2, tz1, tz2))
        l_con = (2 - 2 * F.cosine_similarity(p1, tz2, dim=-1).mean()) + (2 - 2 * F.cosine_similarity(p2, tz1, dim=-1).mean())
        l_pp = (1 - F.cosine_similarity(h1, th2[perm], dim=-1).mean()) + (1 - F.cosine_similarity(h2, th1[perm], dim=-1).mean())
        l_np = F.relu(F.cosine_similarity(h1, hn, dim=-1)).mean() + F.relu(F.cosine_similarity(h2, hn, dim=-1)).mean()
        (l_con + 0.8 * l_pp + 0.6 * l_np).backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(tg_params, 0.99)
            torch._foreach_add_(tg_params, on_params, alpha=0.01)

    ms = timed(step, reps)
    print(f"torch byol_step res {res} batch {batch} {tag} {layout}: {ms:8.2f} ms/step  {1000.0 / ms:7.2f} steps/s")
    return step


def profile_step(step, reps=3):
    """Where the peer's step spends GPU time (torch.profiler, CUDA kernels by name), beside
    fsad's per-op table (FSAD_BENCH_PROFILE)."""
    try:
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                step()
            torch.cuda.synchronize()
        print(f"# torch byol_step profile over {reps} steps (self CUDA time)")
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=60))
    except Exception as e:  # the profiler needs CUPTI; the timings above stand without it
        print(f"# torch profiler unavailable: {e}")


def infer_bench(res, batch, reps, bf16=False, tag="fp32", layout="nchw"):
    import torchvision
    dev = torch.device("cuda")
    bb = torchvision.models.resnet18()
    bb.fc = torch.nn.Identity()
    mf = torch.channels_last if layout == "cl" else torch.contiguous_format
    bb = bb.to(dev).eval().to(memory_format=mf)
    x = torch.rand(batch, 3, res, res, device=dev).contiguous(memory_format=mf)
    with torch.no_grad(), autocast(bf16):
        ms = timed(lambda: bb(x), reps)
    print(f"torch resnet18 features res {res} batch {batch} {tag} {layout}: {ms:8.2f} ms  {batch * 1000.0 / ms:9.1f} img/s (on-device input)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--profile", action="store_true", help="also print torch.profiler's table of the BYOL step")
    a = p.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
    step = None
    # the step and the features in each precision and layout; fsad's BF16 runs matrix products as
    # TF32: the same here (autocast runs linear layers in bf16)
    for tag in ("fp32", "tf32", "bf16"):
        torch.backends.cudnn.allow_tf32 = tag == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tag != "fp32"
        for layout in ("nchw", "cl"):
            s = byol_step_bench(224, 64, 10, bf16=tag == "bf16", tag=tag, layout=layout)
            step = step or s
            infer_bench(224, 512, 10, bf16=tag == "bf16", tag=tag, layout=layout)
    for tag in ("fp32", "tf32", "bf16"):
        torch.backends.cudnn.allow_tf32 = tag == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tag == "tf32"
        dtype = torch.bfloat16 if tag == "bf16" else torch.float32
        for name, cin, cout, hw, k, s, pad in SHAPES:
            x = torch.randn(a.batch, cin, hw, hw, device=dev, dtype=dtype, requires_grad=True)
            w = torch.randn(cout, cin, k, k, device=dev, dtype=dtype) * 0.05
            w = w.detach().requires_grad_(True)
            y = torch.nn.functional.conv2d(x, w, stride=s, padding=pad)
            dy = torch.full_like(y, 0.01)
            macs = y.numel() * cin * k * k
            f = timed(lambda: torch.nn.functional.conv2d(x, w, stride=s, padding=pad), a.reps)
            b = timed(lambda: torch.autograd.grad(torch.nn.functional.conv2d(x, w, stride=s, padding=pad), (x, w), dy),
                      a.reps) - f
            print(f"torch forward  {name:15s} {tag}  {f:8.3f} ms  {2 * macs / f * 1e-9:7.2f} TFLOP/s")
            print(f"torch backward {name:15s} {tag}  {b:8.3f} ms  {4 * macs / b * 1e-9:7.2f} TFLOP/s")
    if a.profile:  # the FP32 NCHW step
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        profile_step(step)


if __name__ == "__main__":
    main()

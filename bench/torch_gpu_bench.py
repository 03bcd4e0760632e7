#!/usr/bin/env python3
"""PyTorch GPU peer of bench/bench_cuda.cpp: the same ResNet18 convolution shapes (batch 64),
forward and backward (data + filter), with cudnn.benchmark on and TF32 off (then on), timed with
CUDA events after warm-up. Prints one line per case: name, ms, TFLOP/s."""
import argparse
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=20)
    a = p.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
    for tf32 in (False, True):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        for name, cin, cout, hw, k, s, pad in SHAPES:
            x = torch.randn(a.batch, cin, hw, hw, device=dev, requires_grad=True)
            w = torch.randn(cout, cin, k, k, device=dev, requires_grad=True) * 0.05
            w = w.detach().requires_grad_(True)
            y = torch.nn.functional.conv2d(x, w, stride=s, padding=pad)
            dy = torch.full_like(y, 0.01)
            macs = y.numel() * cin * k * k
            f = timed(lambda: torch.nn.functional.conv2d(x, w, stride=s, padding=pad), a.reps)
            b = timed(lambda: torch.autograd.grad(torch.nn.functional.conv2d(x, w, stride=s, padding=pad), (x, w), dy),
                      a.reps) - f
            tag = "tf32" if tf32 else "fp32"
            print(f"torch forward  {name:15s} {tag}  {f:8.3f} ms  {2 * macs / f * 1e-9:7.2f} TFLOP/s")
            print(f"torch backward {name:15s} {tag}  {b:8.3f} ms  {4 * macs / b * 1e-9:7.2f} TFLOP/s")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Side-by-side table of scripts/gpu-check.sh's outputs: fsad's GPU benchmarks (Google Benchmark
JSON, one or more files; a file cut short by a timeout gives the benchmarks it finished) and the
PyTorch GPU peer (bench/torch_gpu_bench.py's text). Ratio > 1 means fsad is faster than the best
peer layout. Usage: compare_gpu.py TORCH_TXT BENCH_JSON [BENCH_JSON ...]
A missing or unreadable file leaves its rows out (or '-'); the table is always written."""
import json
import re
import sys


def load_benchmarks(path):
    """The benchmarks of one Google Benchmark JSON file, also of one cut off mid-write."""
    try:
        text = open(path).read()
    except OSError as e:
        print(f"<!-- {path}: {e.strerror} -->")
        return []
    try:
        return json.loads(text)["benchmarks"]
    except (ValueError, KeyError):
        pass
    # cut short: take each complete object of the "benchmarks" array
    start = text.find('"benchmarks"')
    out, dec = [], json.JSONDecoder()
    i = text.find("{", start) if start >= 0 else -1
    while i >= 0:
        try:
            obj, end = dec.raw_decode(text, i)
        except ValueError:
            break
        out.append(obj)
        i = text.find("{", end)
    print(f"<!-- {path}: cut short, {len(out)} benchmarks recovered -->")
    return out


def peer_tables(lines):
    conv, step, feat = {}, {}, {}
    for line in lines:
        m = re.match(r"torch (forward|backward)\s+(\S+)\s+(fp32|tf32|bf16)\s+([\d.]+) ms\s+([\d.]+) TFLOP/s", line)
        if m:
            conv[(m.group(1), m.group(2), m.group(3))] = float(m.group(5))
        m = re.match(r"torch byol_step res \d+ batch \d+ (\w+)(?: (nchw|cl))?:\s+([\d.]+) ms/step", line)
        if m:
            step[(m.group(1), m.group(2) or "nchw")] = float(m.group(3))
        m = re.match(r"torch resnet18 features res \d+ batch \d+ (\w+)(?: (nchw|cl))?:.*?([\d.]+) img/s", line)
        if m:
            feat[(m.group(1), m.group(2) or "nchw")] = float(m.group(3))
    return conv, step, feat


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    try:
        torch_lines = open(sys.argv[1]).read().splitlines()
    except OSError:
        torch_lines = []
    fs = [b for p in sys.argv[2:] for b in load_benchmarks(p) if not b.get("error_occurred")]
    conv, step, feat = peer_tables(torch_lines)
    rows = []  # (case, fsad, peer NCHW, peer CL, ratio fsad / best peer)

    def row(case, ours, unit, peer, higher_better=True, fmt="{:.2f}"):
        a, b = peer.get("nchw"), peer.get("cl")
        best = [v for v in (a, b) if v]
        ratio = None
        if best and ours:
            ratio = ours / max(best) if higher_better else min(best) / ours
        show = lambda v: (fmt.format(v) + " " + unit) if v else "-"
        rows.append((case, show(ours), show(a), show(b), ratio))

    for b in fs:
        name, label = b["name"], b.get("label", "")
        if "cuda_conv2d" in name:
            direction = "forward" if "forward" in name else "backward"
            layer, prec = (label.split() + ["?", "?"])[:2]
            ours = b.get("TFLOP/s", 0.0)
            ours = ours / 1e12 if ours > 1e6 else ours
            row(f"conv {direction} {layer} {prec}", ours, "TFLOP/s", {"nchw": conv.get((direction, layer, prec))})
    for b in fs:
        name, label = b["name"], b.get("label", "")
        prec = label or "fp32"
        if name.startswith("byol_step"):
            ms = 1000.0 / b["steps/s"]
            row(f"fine-tuning step ResNet18 224 px batch 64, {prec}", ms, "ms",
                {k: step.get((prec, k)) for k in ("nchw", "cl")}, higher_better=False)
        elif name.startswith("infer_cuda"):
            row(f"ResNet18 features 224 px batch 512, on-device input, {prec}", b["img/s"], "img/s",
                {k: feat.get((prec, k)) for k in ("nchw", "cl")}, fmt="{:.0f}")
        elif name.startswith("detector_score"):
            bb, scorer, p = (label.split() + ["?", "?", "?"])[:3]  # "<backbone> <scorer> <precision>"
            peer = {k: feat.get((p, k)) for k in ("nchw", "cl")} if bb == "resnet18" and scorer == "global" else {}
            row(f"detector scoring from host images 224 px, {bb} {scorer} {p} (peer: ResNet18 backbone only)",
                b["img/s"], "img/s", peer, fmt="{:.0f}")
        elif name.startswith("detector_fit"):
            row(f"detector fit, 10 shots, MobileNetV2 224 px, no fine-tuning, {label}", b["real_time"], b["time_unit"], {},
                higher_better=False, fmt="{:.0f}")
        elif name.startswith("byol_fit"):
            row(f"fit's fine-tuning 224 px batch 64, FP32 ({label})", b["steps/s"], "steps/s", {})
        elif name.startswith("copy_to_gpu"):
            row(f"host-to-device copy, 256 images ({label})", b["GB/s"], "GB/s", {}, fmt="{:.1f}")
    # issue 20's goal for augmentation on the GPU: fit at >= 90% of the step-only rate (FP32)
    step_fp32 = [b["steps/s"] for b in fs if b["name"].startswith("byol_step") and (b.get("label") or "fp32") == "fp32"]
    fit_gpu = [b["steps/s"] for b in fs if b["name"].startswith("byol_fit") and "on the GPU" in b.get("label", "")]
    if step_fp32 and fit_gpu:
        rows.append(("fit with views made on the GPU / the step alone (FP32; goal >= 0.90)",
                     f"{fit_gpu[0] / step_fp32[0]:.2f}", "-", "-", None))
    print("| case | fsad | PyTorch NCHW | PyTorch channels_last | fsad vs best peer |")
    print("| --- | --- | --- | --- | --- |")
    for case, a, n, c, r in rows:
        print(f"| {case} | {a} | {n} | {c} | {f'{r:.2f}x' if r else '-'} |")
    if not fs:
        print("| (no fsad benchmark finished) | - | - | - | - |")


if __name__ == "__main__":
    main()

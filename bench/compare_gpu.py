#!/usr/bin/env python3
"""Side-by-side table of scripts/gpu-check.sh's two outputs: fsad's GPU benchmarks (Google
Benchmark JSON) and the PyTorch GPU peer (bench/torch_gpu_bench.py's text). Ratio > 1 means
fsad is faster. Usage: compare_gpu.py BENCH_JSON TORCH_TXT"""
import json
import re
import sys


def main():
    fs = json.load(open(sys.argv[1]))["benchmarks"]
    torch_lines = open(sys.argv[2]).read().splitlines()
    rows = []
    # convolutions: label "<layer> fp32|tf32|bf16", counters TFLOP/s
    peer = {}
    for line in torch_lines:
        m = re.match(r"torch (forward|backward)\s+(\S+)\s+(fp32|tf32|bf16)\s+([\d.]+) ms\s+([\d.]+) TFLOP/s", line)
        if m:
            peer[(m.group(1), m.group(2), m.group(3))] = float(m.group(5))
    for b in fs:
        if "error_occurred" in b and b["error_occurred"]:
            continue
        name = b["name"]
        if "cuda_conv2d" in name:
            direction = "forward" if "forward" in name else "backward"
            layer, prec = b.get("label", "? ?").split()
            ours = b.get("TFLOP/s", 0.0) / 1e12 if b.get("TFLOP/s", 0) > 1e6 else b.get("TFLOP/s", 0.0)
            theirs = peer.get((direction, layer, prec))
            peak = b.get("FP32_peak_TFLOP/s", 0.0)
            of_peak = f" ({100.0 * ours / peak:.0f}% of the FP32 peak {peak:.1f})" if peak > 0 else ""
            rows.append((f"conv {direction} {layer} {prec}", f"{ours:.2f} TFLOP/s{of_peak}",
                         f"{theirs:.2f} TFLOP/s" if theirs else "-", ours / theirs if theirs else None))
    text = "\n".join(torch_lines)
    # the peer's step and features lines by precision (fp32 | bf16: autocast)
    step = dict(re.findall(r"torch byol_step res \d+ batch \d+ (\w+):.*?([\d.]+) steps/s", text))
    inf = dict(re.findall(r"torch resnet18 features res \d+ batch \d+ (\w+):.*?([\d.]+) img/s", text))
    for b in fs:
        prec = b.get("label", "fp32")
        if b["name"].startswith("byol_step") and not b.get("error_occurred"):
            ours = b["steps/s"]
            theirs = float(step[prec]) if prec in step else None
            rows.append((f"full fine-tuning step 224/64 {prec}", f"{ours:.2f} steps/s",
                         f"{theirs:.2f} steps/s" if theirs else "-", ours / theirs if theirs else None))
        if b["name"].startswith("infer_cuda") and not b.get("error_occurred"):
            ours = b["img/s"]
            theirs = float(inf[prec]) if prec in inf else None
            rows.append((f"ResNet18 features 224 px batch 512, on-device input, {prec}", f"{ours:.0f} img/s",
                         f"{theirs:.0f} img/s" if theirs else "-", ours / theirs if theirs else None))
        if b["name"].startswith("byol_fit") and not b.get("error_occurred"):
            rows.append((f"fit's fine-tuning 224/64, views augmented on the CPU ({b.get('label', '')})",
                         f"{b['steps/s']:.2f} steps/s", "-", None))
        if b["name"].startswith("copy_to_gpu") and not b.get("error_occurred"):
            rows.append((f"host-to-device copy, 256 images ({b.get('label', '')})", f"{b['GB/s']:.1f} GB/s", "-", None))
        if b["name"].startswith("detector_score") and not b.get("error_occurred"):
            ours = b["img/s"]
            theirs = float(inf[prec]) if prec in inf else None
            rows.append((f"score 224 px, {prec} (fsad: whole detector; torch: backbone only)", f"{ours:.0f} img/s",
                         f"{theirs:.0f} img/s" if theirs else "-", ours / theirs if theirs else None))
    print("| case | fsad | PyTorch | ratio |\n| --- | --- | --- | --- |")
    for name, a, b, r in rows:
        print(f"| {name} | {a} | {b} | {r:.2f} |" if r else f"| {name} | {a} | {b} | - |")


if __name__ == "__main__":
    main()

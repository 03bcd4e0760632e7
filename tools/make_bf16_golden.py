#!/usr/bin/python3
"""Writes tests/data/golden_bf16.safetensors, the fixture of the bfloat16 golden tests
(tests/test_golden.cpp) with PyTorch (Debian's python3-torch).

- round.x / round.y: float32 values and PyTorch's x.to(torch.bfloat16).to(torch.float32): ties
  (to even, both ways), values just above and below ties, subnormals, the largest finite values
  (which round to infinity past the last bfloat16), infinities, NaN, signed zero, and random
  values over many binades.
- conv.<case>.{x, w, dy, y, dx, dw}: a convolution run by PyTorch in bfloat16 (forward, then
  backward from dy), the operands given rounded to bfloat16 and the results widened to float32.
  fsad's Precision::BF16 defines a convolution as bf16(conv_fp32(bf16(x), bf16(w))) and the
  gradients likewise; the test checks that definition against these within one bfloat16 step.

Run from the project root:  /usr/bin/python3 tools/make_bf16_golden.py tests/data
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import save  # noqa: E402

torch.manual_seed(0)
torch.set_num_threads(1)

CASES = {  # name: (x shape, w shape, stride, padding, groups)
    "plain": ((2, 4, 9, 9), (6, 4, 3, 3), 1, 1, 1),
    "depthwise": ((2, 6, 8, 8), (6, 1, 3, 3), 2, 1, 6),
}


def rounding_values():
    bits = []
    for kept in (0x3F80, 0x3F81, 0x4049, 0x0001, 0x007F, 0x7F7F, 0xC2F6):  # even and odd kept halves
        for dropped in (0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF):
            bits.append((kept << 16) | dropped)
    bits += [0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFC12345, 0x00000000, 0x80000000, 0x7F7FFFFF, 0xFF7FFFFF,
             0x00000001, 0x80000001, 0x007FFFFF]
    special = np.array(bits, dtype=np.uint32).view(np.float32)
    g = np.random.default_rng(0)
    spread = (g.standard_normal(200) * np.exp2(g.integers(-40, 40, 200))).astype(np.float32)
    return torch.from_numpy(np.concatenate([special, spread]))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data"
    t = {}
    x = rounding_values()
    t["round.x"] = x
    t["round.y"] = x.to(torch.bfloat16).to(torch.float32)
    meta = {}
    for name, (xs, ws, stride, pad, groups) in CASES.items():
        xb = torch.randn(xs).to(torch.bfloat16).requires_grad_()
        wb = (torch.randn(ws) * 0.3).to(torch.bfloat16).requires_grad_()
        y = F.conv2d(xb, wb, stride=stride, padding=pad, groups=groups)
        dy = torch.randn(y.shape).to(torch.bfloat16)
        y.backward(dy)
        p = f"conv.{name}."
        for k, v in (("x", xb), ("w", wb), ("dy", dy), ("y", y), ("dx", xb.grad), ("dw", wb.grad)):
            t[p + k] = v.detach().to(torch.float32)
        meta[p + "params"] = f"{stride} {pad} {groups}"
    meta["torch"] = torch.__version__
    save(os.path.join(out, "golden_bf16.safetensors"), t, meta)


if __name__ == "__main__":
    main()

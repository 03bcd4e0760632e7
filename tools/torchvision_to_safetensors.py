#!/usr/bin/env python3
"""Converts a torchvision checkpoint (.pth state dict, e.g. resnet18-f37072fd.pth) to the
safetensors file fsad loads, keeping torchvision's key names. Needs PyTorch, nothing else.

    python3 tools/torchvision_to_safetensors.py resnet18-f37072fd.pth resnet18.safetensors

With torchvision installed and internet access, `--download NAME` fetches the ImageNet weights
first (NAME: resnet18, resnet34, resnet50, resnet101, mobilenet_v2):

    python3 tools/torchvision_to_safetensors.py --download resnet18 resnet18.safetensors
"""
import argparse
import json
import os
import struct

import torch


def save(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for k in sorted(tensors):
        v = tensors[k]
        if not torch.is_tensor(v):
            continue
        a = v.detach().cpu()
        a = a.float() if a.is_floating_point() else a.long()
        dtype = "F32" if a.dtype == torch.float32 else "I64"
        b = a.contiguous().numpy().tobytes()
        header[k] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (len(h) + 8) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", nargs="?", help="torchvision .pth state dict")
    p.add_argument("dst", help="output .safetensors")
    p.add_argument("--download", help="torchvision model name to fetch ImageNet weights for")
    a = p.parse_args()
    if a.download:
        import torchvision
        sd = torchvision.models.get_model(a.download, weights="DEFAULT").state_dict()
        src = f"torchvision:{a.download}"
    else:
        if not a.src:
            p.error("give a .pth file or --download NAME")
        sd = torch.load(a.src, map_location="cpu")
        sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
        src = os.path.basename(a.src)
    save(a.dst, sd, {"source": src, "format": "torchvision state dict"})
    print(f"wrote {a.dst} ({len(sd)} entries)")


if __name__ == "__main__":
    main()

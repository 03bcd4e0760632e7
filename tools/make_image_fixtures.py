#!/usr/bin/env python3
"""Writes tiny PNG fixtures for the image-decoding tests (tests/data/images/): 8- and 16-bit
gray, gray+alpha, RGB and RGBA images of 2x3 pixels with known values, a truncated PNG and a
file that is not an image. Standard library only (zlib, struct).

    python3 tools/make_image_fixtures.py tests/data/images
"""
import os
import struct
import sys
import zlib


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)


def png(w, h, depth, color_type, rows):
    raw = b"".join(b"\x00" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/images"
    os.makedirs(out, exist_ok=True)
    w, h = 3, 2
    vals = [[0, 51, 102], [153, 204, 255]]  # 8-bit gray values (x/255 = 0, .2, .4, .6, .8, 1)
    files = {
        "gray8.png": png(w, h, 8, 0, [bytes(r) for r in vals]),
        "gray16.png": png(w, h, 16, 0, [b"".join(struct.pack(">H", v * 257) for v in r) for r in vals]),
        "graya8.png": png(w, h, 8, 4, [b"".join(bytes([v, 128]) for v in r) for r in vals]),
        "rgb8.png": png(w, h, 8, 2, [b"".join(bytes([v, 255 - v, 7]) for v in r) for r in vals]),
        "rgba8.png": png(w, h, 8, 6, [b"".join(bytes([v, 255 - v, 7, 9]) for v in r) for r in vals]),
        "rgb16.png": png(w, h, 16, 2, [b"".join(struct.pack(">HHH", v * 257, 65535 - v * 257, 1000) for v in r)
                                       for r in vals]),
    }
    files["truncated.png"] = files["rgb8.png"][:30]
    files["not_an_image.png"] = b"this is a text file, not an image\n"
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("wrote", len(files), "fixtures to", out)


if __name__ == "__main__":
    main()

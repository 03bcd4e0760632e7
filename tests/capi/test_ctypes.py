#!/usr/bin/env python3
"""Smoke test of the C ABI through ctypes: the path a C# P/Invoke or a LabVIEW call takes (no
compiled glue, only the exported symbols and the header's structs). Standard library only.
Usage: test_ctypes.py LIBFSAD_C NORMAL_DIR TEST_IMAGE WORK_DIR"""
import ctypes as C
import glob
import os
import struct
import sys
import threading

lib_path, normal_dir, test_image, work = sys.argv[1:5]
lib = C.CDLL(lib_path)
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        sys.exit(f"FAIL {what}")
    print(f"ok   {what}")


class Image(C.Structure):  # fsad_image
    _fields_ = [("data", C.c_void_p), ("width", C.c_int32), ("height", C.c_int32), ("channels", C.c_int32),
                ("pixel_type", C.c_int32), ("row_stride", C.c_int64)]


PROGRESS = C.CFUNCTYPE(C.c_int, C.c_char_p, C.c_int64, C.c_int64, C.c_float, C.c_void_p)
lib.fsad_abi_version.restype = C.c_int32
lib.fsad_version.restype = C.c_char_p
lib.fsad_last_error.restype = C.c_char_p
lib.fsad_status_name.restype = C.c_char_p
lib.fsad_status_name.argtypes = [C.c_int32]
lib.fsad_detector_create.argtypes = [C.c_char_p, C.POINTER(C.c_void_p)]
lib.fsad_detector_load.argtypes = [C.c_char_p, C.c_char_p, C.POINTER(C.c_void_p)]
lib.fsad_detector_free.argtypes = [C.c_void_p]
lib.fsad_detector_fit_files.argtypes = [C.c_void_p, C.POINTER(C.c_char_p), C.c_size_t, PROGRESS, C.c_void_p]
lib.fsad_detector_score_files.argtypes = [C.c_void_p, C.POINTER(C.c_char_p), C.c_size_t, C.POINTER(C.c_float)]
lib.fsad_detector_score_images.argtypes = [C.c_void_p, C.POINTER(Image), C.c_size_t, C.POINTER(C.c_float)]
lib.fsad_detector_threshold.argtypes = [C.c_void_p, C.POINTER(C.c_double)]
lib.fsad_detector_save.argtypes = [C.c_void_p, C.c_char_p]
lib.fsad_detector_config_json.argtypes = [C.c_void_p, C.POINTER(C.c_void_p)]
lib.fsad_free.argtypes = [C.c_void_p]

check(lib.fsad_abi_version() == 1, "fsad_abi_version() is 1")
check(lib.fsad_version().decode().count(".") == 2, f"fsad_version() {lib.fsad_version().decode()}")

d = C.c_void_p()
s = lib.fsad_detector_create(b'{"backbone": "resnet18", "width": 0.125, "weights": "", "resolution": 32, '
                             b'"scorer": "global", "n_augment": 2, "threads": 2}', C.byref(d))
check(s == 0 and d.value, "create from JSON")

bad = C.c_void_p()
s = lib.fsad_detector_create(b'{"resolution": "big"}', C.byref(bad))
msg = lib.fsad_last_error().decode()
check(s == 1 and not bad.value and "resolution" in msg, f"a bad value: status argument, message names it ({msg[:90]})")
s = lib.fsad_detector_create(b'{"backbone": "vgg16"}', C.byref(bad))
check(s == 1 and "vgg16" in lib.fsad_last_error().decode(), "an unknown backbone is named")

files = sorted(glob.glob(os.path.join(normal_dir, "*.png")))[:4]
paths = (C.c_char_p * len(files))(*[f.encode() for f in files])
stages = []


@PROGRESS
def progress(stage, done, total, loss, user):
    stages.append(stage.decode())
    return 0


@PROGRESS
def cancel(stage, done, total, loss, user):
    return 1


f = C.c_float()
check(lib.fsad_detector_score_files(d, paths, 1, C.byref(f)) == 4, "scoring before fit: status state")
check(lib.fsad_detector_fit_files(d, paths, len(files), cancel, None) == 5, "a callback returning 1 cancels fit")
check("cancelled" in lib.fsad_last_error().decode(), "the message says cancelled")
check(lib.fsad_detector_score_files(d, paths, 1, C.byref(f)) == 4, "a cancelled fit leaves the detector unfitted")
check(lib.fsad_detector_fit_files(d, paths, len(files), progress, None) == 0, f"fit on {len(files)} files")
check("features" in stages and "threshold" in stages, "progress saw the stages " + ",".join(sorted(set(stages))))
t = C.c_double()
check(lib.fsad_detector_threshold(d, C.byref(t)) == 0 and t.value > 0, f"threshold {t.value:.4f}")

test = (C.c_char_p * 1)(test_image.encode())
score = C.c_float()
check(lib.fsad_detector_score_files(d, test, 1, C.byref(score)) == 0 and score.value > 0, f"score {score.value:.4f}")

# a 40 x 32 RGB image in a ctypes buffer, rows padded to 128 bytes
W, H, stride = 40, 32, 128
buf = (C.c_ubyte * (stride * H))()
for y in range(H):
    for x in range(W):
        for c in range(3):
            buf[y * stride + 3 * x + c] = (x * 6 + y * 3 + c * 40) % 256
img = Image(C.cast(buf, C.c_void_p), W, H, 3, 1, stride)
scores = (C.c_float * 2)()
imgs = (Image * 2)(img, img)
check(lib.fsad_detector_score_images(d, imgs, 2, scores) == 0 and scores[0] == scores[1] and scores[0] > 0,
      f"score two buffers {scores[0]:.4f}")
img.row_stride = 10  # shorter than a row
check(lib.fsad_detector_score_images(d, C.byref(img), 1, scores) == 1 and "row_stride" in lib.fsad_last_error().decode(),
      "a short row_stride is refused by name")

results = [None] * 4


def worker(i):
    out = C.c_float()
    results[i] = (lib.fsad_detector_score_files(d, test, 1, C.byref(out)), out.value)


threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
for th in threads:
    th.start()
for th in threads:
    th.join()
check(all(r == (0, score.value) for r in results), "four threads scoring at once get the same score")

model = os.path.join(work, "ctypes.fsad").encode()
check(lib.fsad_detector_save(d, model) == 0, "save")
e = C.c_void_p()
check(lib.fsad_detector_load(model, None, C.byref(e)) == 0, "load")
again = C.c_float()
lib.fsad_detector_score_files(e, test, 1, C.byref(again))
check(abs(again.value - score.value) <= 1e-4 * abs(score.value), f"the loaded model scores the same ({again.value:.4f})")
check(lib.fsad_detector_fit_files(e, paths, len(files), progress, None) == 4
      and "not fitted again" in lib.fsad_last_error().decode(), "a loaded detector refuses fit (status state)")
js = C.c_void_p()
check(lib.fsad_detector_config_json(e, C.byref(js)) == 0 and b'"scorer":"global"' in C.string_at(js), "config JSON")
lib.fsad_free(js)
s = lib.fsad_detector_load(test_image.encode(), None, C.byref(bad))
check(s in (2, 3) and test_image in lib.fsad_last_error().decode(), "loading an image as a model names the file")
lib.fsad_detector_free(e)
lib.fsad_detector_free(d)
print(f"ctypes: {checks} checks passed")

"""Tests of the Python package fsad (python/fsad over the C ABI): agreement with the fsad tool,
numpy dtypes, shapes and strides, errors carrying the C++ message, threads, progress and
cancellation, anomaly maps, python -m fsad. Run by ctest (test "python") with the build tree's
package on PYTHONPATH and FSAD_CLI naming the fsad tool; small images (48 px shots, 32 px views,
a 1/8-width ResNet18 without weights) keep it to seconds."""
import glob
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fsad

CLI = os.environ.get("FSAD_CLI", "fsad")
DATA = os.environ.get("FSAD_TEST_DATA", os.path.join(os.path.dirname(__file__), "..", "data"))
TINY = dict(backbone="resnet18", weights="", width=0.125, resolution=32, n_augment=2, threads=2)


def run_cli(*args):
    r = subprocess.run([CLI, *args], capture_output=True, text=True)
    assert r.returncode == 0, f"fsad {' '.join(args)}: {r.stderr}"
    return r.stdout


@pytest.fixture(scope="session")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsad_py")
    run_cli("synth", "-o", str(root / "ds"), "--size", "48", "--pool", "6", "--test", "2", "--products", "metal")
    normal = sorted(glob.glob(str(root / "ds/metal/train/good/*.png")))
    test = sorted(glob.glob(str(root / "ds/metal/test/*/*.png")))
    return root, normal, test


@pytest.fixture(scope="session")
def fitted(ds):
    """A detector fitted on the shots with the patch-knn scorer (maps) and its test scores."""
    root, normal, test = ds
    d = fsad.Detector(TINY, scorer="patch-knn", seed=5)
    d.fit(normal)
    return d


def image(h=40, w=56, seed=0):
    """An RGB uint8 test image [h, w, 3] with structure (gradients and a block)."""
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    img = np.stack([(x * 4 + y) % 256, (y * 5) % 256, (x * y) % 256], axis=-1).astype(np.uint8)
    img[h // 3:h // 2, w // 3:w // 2] = rng.integers(0, 256, size=(h // 2 - h // 3, w // 2 - w // 3, 3))
    return img


# ------------------------------------------------------------------------ agreement with the CLI
def test_fit_score_save_load_match_the_cli(ds):
    root, normal, test = ds
    model = str(root / "cli.fsad")
    run_cli("-q", "fit", "--normal", os.path.dirname(normal[0]), "--backbone", "resnet18", "--weights", "none",
            "--width", "0.125", "--res", "32", "--batch", "4", "--n-augment", "2", "--threads", "2", "--steps", "2",
            "--seed", "4", "-o", model)
    cli = json.loads(run_cli("-q", "score", "-m", model, *test, "--json"))
    cli_scores = np.array([i["score"] for i in cli["images"]], dtype=np.float32)
    assert [i["path"] for i in cli["images"]] == test

    # the CLI's model, loaded from Python, scores as the CLI did (the CLI prints 4 decimals)
    loaded = fsad.Detector.load(model)
    np.testing.assert_allclose(loaded.score(test), cli_scores, rtol=0, atol=1e-4)
    assert loaded.threshold == pytest.approx(cli["threshold"], abs=1e-4)

    # fitting from Python with the model's configuration on the same images and seed gives the same
    cfg = loaded.config
    cfg["weights"] = ""
    cfg["threads"] = 2
    mine = fsad.Detector(cfg)
    mine.fit(normal)
    assert mine.config["scorer"] == cfg["scorer"]
    np.testing.assert_allclose(mine.score(test), cli_scores, rtol=0, atol=1e-4)
    assert mine.threshold == pytest.approx(loaded.threshold, rel=1e-5)

    # and its own save/load round trip keeps the scores
    path = root / "py.fsad"
    mine.save(path)
    back = fsad.Detector.load(path)
    np.testing.assert_allclose(back.score(test), mine.score(test), rtol=1e-5)
    assert back.config == mine.config
    with pytest.raises(fsad.StateError, match="not fitted again"):
        back.fit(normal)


# ------------------------------------------------------------------------ numpy input
def test_dtypes_give_the_same_scores(fitted):
    u8 = image()
    ref = fitted.score([u8])[0]
    u16 = u8.astype(np.uint16) * 257
    f32 = u8.astype(np.float32) / 255
    f64 = u8.astype(np.float64) / 255
    rgba = np.concatenate([u8, np.full(u8.shape[:2] + (1,), 7, np.uint8)], axis=-1)
    s = fitted.score([u16, f32, f64, rgba])
    np.testing.assert_allclose(s, ref, rtol=1e-5)


def test_gray_shapes(fitted):
    g = image()[..., 0].copy()
    s = fitted.score([g, g[..., None], np.repeat(g[..., None], 3, axis=-1)])
    assert s.shape == (3,) and s.dtype == np.float32
    np.testing.assert_allclose(s, s[0], rtol=1e-6)


def test_non_contiguous_arrays(fitted):
    img = image()
    ref = fitted.score([img])[0]
    wide = np.repeat(img, 2, axis=1)          # every column twice: [:, ::2] is the image
    tall = np.repeat(img, 3, axis=0)          # every row three times: [::3] is the image (row stride only)
    fortran = np.asfortranarray(img)
    chw = np.ascontiguousarray(img.transpose(2, 0, 1))
    views = [wide[:, ::2], tall[::3], fortran, chw.transpose(1, 2, 0), np.flipud(np.flipud(img))]
    assert not views[0].flags.c_contiguous and not views[1].flags.c_contiguous
    np.testing.assert_allclose(fitted.score(views), ref, rtol=1e-6)
    crop = np.zeros((60, 80, 3), np.uint8)
    crop[5:45, 10:66] = img
    np.testing.assert_allclose(fitted.score([crop[5:45, 10:66]]), ref, rtol=1e-6)  # a crop: rows apart


def test_paths_and_arrays_mixed_keep_their_order(fitted, ds):
    _, _, test = ds
    a, b = image(seed=1), image(seed=2)
    s = fitted.score([test[0], a, test[1], b])
    np.testing.assert_allclose(s, [fitted.score([test[0]])[0], fitted.score([a])[0], fitted.score([test[1]])[0],
                                   fitted.score([b])[0]], rtol=1e-6)


def test_fit_from_arrays(ds):
    shots = [image(seed=i) for i in range(3)]
    d = fsad.Detector(TINY, scorer="global")
    d.fit(shots)
    s, bad = d.decide([image(seed=9), shots[0]])
    assert s.shape == (2,) and bad.dtype == np.bool_
    d.threshold = -1.0
    assert d.decide([shots[0]])[1].all()


# ------------------------------------------------------------------------ errors
def test_bad_input_raises_with_the_cpp_message(fitted, tmp_path):
    with pytest.raises(fsad.ArgumentError, match="dtype"):
        fitted.score([image().astype(np.int32)])
    with pytest.raises(fsad.ArgumentError, match="shape"):
        fitted.score([np.zeros((8, 8, 2), np.uint8)])
    with pytest.raises(fsad.ArgumentError, match="list"):
        fitted.score("one.png")
    with pytest.raises(fsad.FileError, match="missing.png"):
        fitted.score([str(tmp_path / "missing.png")])
    with pytest.raises(fsad.FileError, match="not_an_image.png"):
        fitted.score([os.path.join(DATA, "images", "not_an_image.png")])
    with pytest.raises(fsad.FileError, match="truncated.png"):
        fsad.Detector.load(os.path.join(DATA, "images", "truncated.png"))
    with pytest.raises(fsad.ArgumentError, match='"resolutoin"'):
        fsad.Detector(resolutoin=64)
    with pytest.raises(fsad.ArgumentError, match="byol.steps"):
        fsad.Detector(byol={"steps": "many"})
    with pytest.raises(fsad.ArgumentError, match=r"resolution must be 0 \(auto\) or lie in \[32, 4096\]"):
        fsad.Detector(TINY, resolution=8)
    with pytest.raises(fsad.StateError, match="not fitted"):
        fsad.Detector(TINY).score([image()])
    with pytest.raises(fsad.ArgumentError, match="needs at least 2"):
        fsad.Detector(TINY, scorer="patch-knn").fit([image()])
    with pytest.raises(fsad.FileError, match="no/such/dir"):
        fitted.save("no/such/dir/m.fsad")
    assert isinstance(fsad.ArgumentError("x"), ValueError) and isinstance(fsad.FileError("x"), OSError)


def test_device_and_precision_choice(fitted):
    d = fsad.Detector(TINY, scorer="global", precision="bf16")
    d.fit([image(seed=i) for i in range(3)])
    assert np.isfinite(d.score([image()])).all()
    with pytest.raises(fsad.ArgumentError, match="tf32"):
        fsad.Detector(TINY, precision="tf32")
    with pytest.raises(fsad.ArgumentError, match="fp16"):
        fsad.Detector(TINY, precision="fp16")
    with pytest.raises(fsad.ArgumentError):
        fsad.Detector(TINY, device="tpu")
    try:
        g = fsad.Detector(TINY, device="cuda")
    except fsad.DeviceError as e:  # no CUDA backend or no GPU here: a clear refusal
        assert "cuda" in str(e)
    else:
        g.fit([image(seed=i) for i in range(3)])
        assert np.isfinite(g.score([image()])).all()


# ------------------------------------------------------------------------ threads, progress
def test_threads_scoring_at_once(fitted, ds):
    _, _, test = ds
    imgs = [image(seed=i) for i in range(6)]
    want = fitted.score(imgs)
    got = [None] * 6
    errors = []

    def work(k):
        try:
            for _ in range(3):
                got[k] = fitted.score(imgs if k % 2 == 0 else imgs[::-1])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    for k in range(6):
        np.testing.assert_array_equal(got[k], want if k % 2 == 0 else want[::-1])


def test_scoring_during_a_fit_uses_the_old_model_then_the_new(ds):
    _, normal, _ = ds
    d = fsad.Detector(TINY, scorer="global")
    d.fit(normal[:3])
    probe = [image(seed=3)]
    old = d.score(probe)[0]
    seen, stop = [], threading.Event()

    def scorer():
        while not stop.is_set():
            seen.append(d.score(probe)[0])

    t = threading.Thread(target=scorer)
    t.start()
    d.fit(normal)  # other shots: another model
    stop.set()
    t.join()
    new = d.score(probe)[0]
    assert new != old and seen
    assert set(seen) <= {old, new}  # never a half-fitted model


def test_the_gil_is_released_while_scoring(fitted):
    imgs = [image(seed=i) for i in range(64)]
    done = threading.Event()
    t = threading.Thread(target=lambda: (fitted.score(imgs), done.set()))
    ticks = 0
    t.start()
    while not done.is_set():
        ticks += 1
    t.join()
    # with the GIL held for the whole call, this thread would hardly run (a few switch intervals)
    assert ticks > 1000


def test_progress_and_cancel(ds):
    _, normal, test = ds
    d = fsad.Detector(TINY, scorer="global")
    seen = []
    d.fit(normal[:3], progress=lambda stage, done, total, loss: seen.append((stage, done, total)))
    assert {"features", "density", "threshold"} <= {s for s, _, _ in seen}
    before = d.score(test[:2])

    with pytest.raises(fsad.Cancelled, match="cancelled"):
        d.fit(normal, progress=lambda *a: False)
    np.testing.assert_array_equal(d.score(test[:2]), before)  # a cancelled fit leaves the old model

    def boom(*a):
        raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        d.fit(normal, progress=boom)
    fresh = fsad.Detector(TINY, scorer="global")
    with pytest.raises(fsad.Cancelled):
        fresh.fit(normal, progress=lambda *a: False)
    assert not fresh.fitted


# ------------------------------------------------------------------------ maps, CLI
def test_score_map(fitted):
    img = image(h=44, w=60)
    (m,) = fitted.score_map([img])
    assert m.shape == (44, 60) and m.dtype == np.float32
    assert float(m.max()) == pytest.approx(float(fitted.score([img])[0]), rel=0.05)
    glob_det = fsad.Detector(TINY, scorer="global")
    glob_det.fit([image(seed=i) for i in range(3)])
    with pytest.raises(fsad.StateError, match="no anomaly map"):
        glob_det.score_map([img])


def test_python_m_fsad_runs_the_cli():
    r = subprocess.run([sys.executable, "-m", "fsad", "info"], capture_output=True, text=True,
                       env=dict(os.environ, FSAD_CLI=CLI))
    assert r.returncode == 0 and "cpu kernels:" in r.stdout
    r = subprocess.run([sys.executable, "-m", "fsad", "fit", "--normal", "x", "-o", "y", "--frobnicate"], capture_output=True, text=True,
                       env=dict(os.environ, FSAD_CLI=CLI))
    assert r.returncode == 109 and "--frobnicate" in r.stderr  # the tool's own exit code comes back


def test_versions():
    assert fsad.abi_version() == 1 and fsad.__version__.count(".") == 2


def test_weights_auto_names_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setenv("FSAD_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(fsad.ArgumentError, match="no resnet18 weights found") as e:
        fsad.Detector(TINY, weights="auto")
    assert str(tmp_path) in str(e.value)

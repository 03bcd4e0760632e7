"""fsad: few-shot anomaly detection (fit on a few normal images, score, threshold, save, load).

The Python face of fsad's C ABI (include/fsad/fsad.h); docs/python.md has the guide.

    import fsad
    det = fsad.Detector(backbone="resnet18", weights="", resolution=64, scorer="patch-knn")
    det.fit(["good/000.png", "good/001.png", "good/002.png"])
    scores = det.score(["test/a.png", numpy_image])   # numpy float32 [n]
    det.save("model.fsad"); det = fsad.Detector.load("model.fsad")
"""
import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _fsad
from ._errors import ArgumentError, Cancelled, DeviceError, FileError, FormatError, FsadError, StateError

__all__ = ["Detector", "FsadError", "ArgumentError", "FileError", "FormatError", "StateError", "Cancelled",
           "DeviceError", "abi_version", "__version__"]
__version__ = _fsad.version()

if _fsad.abi_version() != _fsad.ABI_VERSION:  # a module built against another libfsad_c
    raise ImportError(f"fsad: the compiled module speaks ABI {_fsad.ABI_VERSION}, the library {_fsad.abi_version()}")


def abi_version() -> int:
    """The C ABI version of the loaded library (FSAD_ABI_VERSION)."""
    return _fsad.abi_version()


Image = Union[str, "os.PathLike[str]", np.ndarray]
Progress = Callable[[str, int, int, float], Optional[bool]]


def _merge(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _array(a: np.ndarray, i: int) -> np.ndarray:
    """An image array as the C ABI takes it: [H, W] or [H, W, C], uint8/uint16/float32, pixels
    contiguous within each row (rows may be any positive distance apart: no copy for a crop or a
    row step; a copy for a column step, reversed rows or another dtype)."""
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    elif a.dtype not in (np.uint8, np.uint16, np.float32):
        raise ArgumentError(f"image {i}: dtype must be uint8, uint16, float32 (or float64), got {a.dtype}")
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ArgumentError(f"image {i}: an array must be [H, W] or [H, W, C] with C in 1, 3, 4, got shape {a.shape}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    c = a.shape[2] if a.ndim == 3 else 1
    s = a.itemsize
    if not ((a.shape[1] == 1 or a.strides[1] == c * s) and (a.ndim == 2 or a.strides[2] == s) and a.strides[0] > 0):
        a = np.ascontiguousarray(a)
    return a


def _split(images: Sequence[Image]) -> Tuple[List[int], List[str], List[int], List[np.ndarray]]:
    if isinstance(images, (str, os.PathLike, np.ndarray)):
        raise ArgumentError("images must be a list (of paths or numpy arrays), got a single "
                            + type(images).__name__ + "; wrap it in a list")
    pi, paths, ai, arrays = [], [], [], []
    for i, x in enumerate(images):
        if isinstance(x, (str, os.PathLike)):
            pi.append(i)
            paths.append(os.fspath(x))
        elif isinstance(x, np.ndarray):
            ai.append(i)
            arrays.append(_array(x, i))
        else:
            raise ArgumentError(f"image {i}: expected a path or a numpy array, got {type(x).__name__}")
    return pi, paths, ai, arrays


class Detector:
    """fsad::Detector: the embeddable facade. Fit on a few normal images (optionally fine-tuning
    the backbone with the paper's contrastive method), score images by Mahalanobis distance under
    the Gaussian of the adapted features (or with the patch scorers), decide against a threshold
    calibrated on normal data only, and save/load everything as one versioned model file.

    Configuration: the keys of a model file's config (DetectorConfig; docs/python.md lists them)
    as keyword arguments or a dict (nested dicts for "byol", "patch", "density"), plus
    ``device`` ("cpu", "cuda", "cuda:N"), ``precision`` of the features and scores ("fp32",
    "tf32" on CUDA, "bf16") and ``threads`` (0 = all cores). An unknown key raises ArgumentError.
    ``weights=""`` is a randomly initialised backbone, else a safetensors checkpoint path.

    Threads: score, decide, score_map, save may run from several Python threads at once on one
    detector (the GIL is released while fsad works); fit builds a new model and swaps it in at the
    end, so scores during a fit use the previous one.
    """

    def __init__(self, config: Optional[Dict[str, Any]] = None, **kwargs: Any) -> None:
        cfg = _merge(config or {}, kwargs)
        self._h = _fsad.Handle(json.dumps(cfg))

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"], device: str = "cpu") -> "Detector":
        """Reads a model file; refuses other formats/versions, truncated or modified files."""
        d = cls.__new__(cls)
        d._h = _fsad.Handle.load(os.fspath(path), device)
        return d

    def fit(self, images: Sequence[Image], progress: Optional[Progress] = None) -> None:
        """Fits on normal images (paths, or numpy arrays [H, W] / [H, W, C] uint8, uint16 or
        float32 in [0, 1]; one kind per call). Requires at least one image (the patch scorers: 2).

        progress(stage, done, total, loss) is called as fit goes ("fine-tune", "features",
        "density", "threshold"); returning False (or raising) stops fit, which then raises
        Cancelled (or the exception) and leaves the detector as it was."""
        pi, paths, ai, arrays = _split(images)
        if paths and arrays:
            raise ArgumentError("fit: give paths or arrays, not both in one call")
        self._h.fit(paths, arrays, progress)

    def score(self, images: Sequence[Image]) -> np.ndarray:
        """Anomaly scores (float32 [n]) of images: paths or numpy arrays, mixed freely. Global
        scorer: Mahalanobis distance; patch scorers: the maximum of the smoothed anomaly map.
        Thread-safe on a fitted detector."""
        pi, paths, ai, arrays = _split(images)
        out = np.empty(len(pi) + len(ai), dtype=np.float32)
        if paths:
            out[pi] = self._h.score_files(paths)
        if arrays:
            out[ai] = self._h.score_arrays(arrays)
        return out

    def decide(self, images: Sequence[Image]) -> Tuple[np.ndarray, np.ndarray]:
        """(scores float32 [n], anomalous bool [n]): anomalous = score > threshold."""
        s = self.score(images)
        return s, s > self.threshold

    def score_map(self, images: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Anomaly maps (float32 [H, W]) of image arrays (patch scorers only: the global scorer has
        none), upsampled to each image's own size; higher = more anomalous, on the scale of score()."""
        pi, paths, ai, arrays = _split(images)
        if paths:
            raise ArgumentError("score_map takes numpy arrays (the map has the array's size); decode the file first")
        return [self._h.score_map(a)[0] for a in arrays]

    @property
    def threshold(self) -> float:
        """Decision threshold, calibrated by fit on the normal shots (threshold_quantile)."""
        return self._h.threshold()

    @threshold.setter
    def threshold(self, t: float) -> None:
        self._h.set_threshold(float(t))

    @property
    def fitted(self) -> bool:
        """True after fit or load."""
        return self._h.fitted()

    @property
    def config(self) -> Dict[str, Any]:
        """The configuration (the model file's keys; after fit the chosen scorer and view size)."""
        return json.loads(self._h.config_json())

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes the model file (safetensors: backbone, density, threshold, config, format version,
        checksum) atomically."""
        self._h.save(os.fspath(path))

    def __repr__(self) -> str:
        c = self.config
        return f"fsad.Detector(backbone={c['backbone']!r}, scorer={c['scorer']!r}, fitted={self.fitted})"

"""Array and IDX files: load_array (.npy / .npz in any common image layout) and read_idx (the MNIST format)."""
from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .base import DataError

__all__ = ["load_array", "read_idx"]


def _images_from_array(a: np.ndarray, layout: str | None, what: str) -> Tensor:
    """An (N, d) point cloud, or images in (N, H, W) / (N, H, W, C) / (N, C, H, W), as float32."""
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise DataError(f"{what}: expected a numeric array, got dtype {a.dtype}")
    if a.ndim == 2:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4:
        if layout is None:
            first, last = a.shape[1] in (1, 3, 4), a.shape[3] in (1, 3, 4)
            if first and last:  # ambiguous: prefer the reading whose images are square
                layout = "NHWC" if a.shape[1] == a.shape[2] and a.shape[2] != a.shape[3] else "NCHW"
            else:
                layout = "NHWC" if last else "NCHW"
        layout = layout.upper()
        if layout not in ("NCHW", "NHWC"):
            raise DataError(f"{what}: layout must be 'NCHW' or 'NHWC', got {layout!r}")
        if layout == "NHWC":
            a = a.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{what}: expected (N, d) points or (N, H, W[, C]) / (N, C, H, W) images, "
                        f"got shape {a.shape}")
    if np.issubdtype(a.dtype, np.integer):
        if a.size and (a.min() < 0 or a.max() > 255):
            raise DataError(f"{what}: integer images must hold values in 0..255, found {a.min()}..{a.max()}")
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) / 255.0
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


_ARRAY_KEYS = ("x", "images", "image", "data", "samples", "arr_0")
_LABEL_KEYS = ("y", "labels", "label", "targets")


def _npz_keys(z, path: Path, key: str | None) -> tuple[str, str | None]:
    keys = list(z.files)
    if key is not None:
        if key not in keys:
            raise DataError(f"{path}: no array named {key!r}; it holds {', '.join(keys) or 'nothing'}")
        data_key = key
    else:
        data = [k for k in keys if k not in _LABEL_KEYS]
        named = [k for k in _ARRAY_KEYS if k in keys]
        if len(data) == 1:
            data_key = data[0]
        elif named:
            data_key = named[0]
        else:
            raise DataError(f"{path} holds several arrays ({', '.join(keys)}): pass key= to pick one")
    label_key = next((k for k in _LABEL_KEYS if k in keys and k != data_key), None)
    return data_key, label_key


def load_array(path: str | Path, key: str | None = None, *, layout: str | None = None,
               return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor | None]:
    """Read a ``.npy`` or ``.npz`` file (never unpickling) as a float32 tensor.

    2-D arrays (N, d) are point clouds and keep their values. Higher-rank arrays are images in
    (N, H, W), (N, H, W, C) or (N, C, H, W) - the layout is guessed from which axis has 1, 3 or 4
    entries (pass ``layout="NCHW"`` / ``"NHWC"`` to override) - and come back as (N, C, H, W); integer
    images (uint8) are read as 0..255 and divided by 255, float images keep their values.

    In an ``.npz`` the array is ``key``, the only non-label array, or the first of x/images/data/...;
    with ``return_labels`` the labels come from a y/labels/label/targets array when there is one.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"array file not found: {path} (expected a .npy or .npz file)")
    labels = None
    try:
        z = np.load(path, allow_pickle=False)
        if isinstance(z, np.ndarray):
            if key is not None:
                raise DataError(f"{path} is a single .npy array: key={key!r} does not apply")
            a = z
        else:
            with z:
                data_key, label_key = _npz_keys(z, path, key)
                a = z[data_key]
                if label_key is not None:
                    labels = torch.from_numpy(np.asarray(z[label_key]).astype(np.int64).reshape(-1))
    except DataError:
        raise
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"cannot read {path} as a numpy .npy/.npz file ({e})") from None
    x = _images_from_array(a, layout, str(path))
    if labels is not None and labels.shape[0] != x.shape[0]:
        raise DataError(f"{path}: {labels.shape[0]} labels for {x.shape[0]} items")
    return (x, labels) if return_labels else x


_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not (detected from the content)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}") from None
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path} ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = math.prod(shape)
    if len(raw) - header != count * dtype.itemsize:
        raise DataError(f"{path}: IDX header promises shape {shape} ({count * dtype.itemsize} bytes) "
                        f"but the file holds {len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape).astype(dtype.newbyteorder("="))

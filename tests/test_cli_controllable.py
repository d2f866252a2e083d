"""``scoresde inpaint --workdir`` and ``scoresde colorize``: outputs equal the library's, masks and images are
checked, bad input is one line and exit 2."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scoresde.brownian import NoiseSource
from scoresde.cli import main
from scoresde.colorization import colorize, grey_of
from scoresde.inpainting import inpaint


def _tiny_workdir(path, channels: int):
    from scoresde.config import load_config
    from scoresde.train import Trainer

    kwargs = "model.kwargs={nf: 8, ch_mult: [1], num_res_blocks: 1, attn_resolutions: [], image_size: 8, dropout: 0.0}"
    cfg = load_config(None, ["data.dataset=digits", f"data.channels={channels}", "model.arch=unet",
                             "training.batch_size=8", "training.n_iters=1", kwargs])
    Trainer(cfg, path, progress=False).save()  # an untrained checkpoint: the numbers only need to match


@pytest.fixture(scope="module")
def grey_wd(tmp_path_factory):
    w = tmp_path_factory.mktemp("wd") / "grey"
    _tiny_workdir(w, 1)
    return w


@pytest.fixture(scope="module")
def rgb_wd(tmp_path_factory):
    w = tmp_path_factory.mktemp("wd") / "rgb"
    _tiny_workdir(w, 3)
    return w


def _one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_inpaint_workdir_equals_the_library(grey_wd, tmp_path, capsys):
    from scoresde.workdir import model_from_workdir

    rng = np.random.default_rng(0)
    imgs = rng.random((3, 8, 8))
    np.save(tmp_path / "x.npy", imgs)
    out = tmp_path / "f.npz"
    argv = ["inpaint", "--workdir", str(grey_wd), "--images", str(tmp_path / "x.npy"), "--steps", "4", "--out"]
    assert main(argv + [str(out), "--mask", "lower-half", "--batch-size", "2"]) == 0
    z = np.load(out)
    assert z["samples"].shape == (3, 1, 8, 8) and out.with_suffix(".png").exists()
    known = torch.from_numpy(imgs[:, None] * 2 - 1).float()
    np.testing.assert_array_equal(z["samples"][:, :, :4], known[:, :, :4].numpy())  # the upper half kept exactly
    model, _, _, _ = model_from_workdir(grey_wd, device="cpu")
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 4:, :] = 0
    noise = NoiseSource(0, (1, 8, 8), [2], dtype=torch.float32)
    with torch.no_grad():
        ref = inpaint(model, model.sde.prior_sample(noise.draw()), noise, known=known[2:], mask=mask, steps=4)
    np.testing.assert_allclose(z["samples"][2:], ref.samples.numpy(), rtol=0, atol=1e-5)  # per-image seeds
    # a box mask and a file mask with the same pixels give the same fills
    m = np.ones((8, 8))
    m[4:, :] = 0
    np.save(tmp_path / "m.npy", m)
    assert main(argv + [str(tmp_path / "g.npz"), "--mask", str(tmp_path / "m.npy")]) == 0
    assert main(argv + [str(tmp_path / "h.npz"), "--mask", "box:4,0,4,8"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "g.npz")["samples"], z["samples"])
    np.testing.assert_array_equal(np.load(tmp_path / "h.npz")["samples"], z["samples"])
    capsys.readouterr()
    np.save(tmp_path / "bad.npy", np.full((8, 8), 2))
    np.save(tmp_path / "wrong.npy", np.ones((5, 5)))
    np.save(tmp_path / "big.npy", rng.random((2, 9, 9)))
    bad = tmp_path / "bad.npz"
    for extra, needle in [(["--mask", str(tmp_path / "bad.npy")], "only 0"),
                          (["--mask", str(tmp_path / "wrong.npy")], "has shape (5, 5)"),
                          (["--mask", "box:6,0,4,8"], "inside"), (["--mask", "middle"], "not a region"),
                          (["--mask", "lower-half", "--method", "exact"], "exact-score"),
                          (["--mask", "lower-half", "--sde", "ve"], "config")]:
        _one_line_error(capsys, argv + [str(bad)] + extra, needle)
    _one_line_error(capsys, ["inpaint", "--workdir", str(grey_wd), "--images", str(tmp_path / "big.npy"), "--mask",
                             "lower-half", "--out", str(bad)], "do not fit")
    _one_line_error(capsys, ["inpaint", "--workdir", str(grey_wd), "--data", str(tmp_path / "x.npy"), "--mask",
                             "lower-half", "--out", str(bad)], "--images")
    assert not bad.exists()


def test_colorize_equals_the_library_and_keeps_the_grey(rgb_wd, grey_wd, tmp_path, capsys):
    from scoresde.workdir import model_from_workdir

    rng = np.random.default_rng(1)
    rgb = rng.random((2, 8, 8, 3))  # channels last is accepted too
    np.save(tmp_path / "rgb.npy", rgb)
    out = tmp_path / "c.npz"
    assert main(["colorize", "--workdir", str(rgb_wd), "--images", str(tmp_path / "rgb.npy"), "--steps", "4",
                 "--sampler", "ddim", "--out", str(out)]) == 0
    z = np.load(out)
    grey = torch.from_numpy(rgb.mean(-1)[:, None] * 2 - 1).float()
    np.testing.assert_allclose(z["grey"], grey.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(grey_of(torch.from_numpy(z["samples"])).numpy(), grey.numpy(), rtol=0, atol=1e-5)
    model, _, _, _ = model_from_workdir(rgb_wd, device="cpu")
    noise = NoiseSource(0, (3, 8, 8), [0, 1], dtype=torch.float32)
    with torch.no_grad():
        ref = colorize(model, model.sde.prior_sample(noise.draw()), noise, grey=grey, base="ddim", steps=4)
    np.testing.assert_allclose(z["samples"], ref.samples.numpy(), rtol=0, atol=1e-5)
    # grey inputs give the same colourings as the RGB images they came from
    np.save(tmp_path / "grey.npy", rgb.mean(-1))
    assert main(["colorize", "--workdir", str(rgb_wd), "--images", str(tmp_path / "grey.npy"), "--steps", "4",
                 "--sampler", "ddim", "--out", str(tmp_path / "g.npz")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "g.npz")["samples"], z["samples"], rtol=0, atol=1e-5)
    capsys.readouterr()
    bad = tmp_path / "bad.npz"
    _one_line_error(capsys, ["colorize", "--workdir", str(grey_wd), "--images", str(tmp_path / "grey.npy"),
                             "--out", str(bad)], "RGB image model")
    _one_line_error(capsys, ["colorize", "--workdir", str(rgb_wd), "--images", str(tmp_path / "grey.npy"),
                             "--zeta", "1", "--out", str(bad)], "--method dps")
    _one_line_error(capsys, ["colorize", "--workdir", str(rgb_wd), "--images", str(tmp_path / "grey.npy"),
                             "--sampler", "ode", "--out", str(bad)], "invalid choice")
    np.save(tmp_path / "neg.npy", -rgb)
    _one_line_error(capsys, ["colorize", "--workdir", str(rgb_wd), "--images", str(tmp_path / "neg.npy"),
                             "--out", str(bad)], "[0, 1]")
    assert not bad.exists()

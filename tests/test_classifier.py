"""Noise-conditional classifiers: the input is the same function of (x_ve, sigma~) for every SDE, the trained
classifier approaches the exact responsibilities of a mixture, training resumes exactly, classifier-free
guidance's label embedding leaves unlabelled U-Nets unchanged, and the CLI's guided sampling equals the library's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import scoresde as s
from scoresde.classifier import NoiseConditionalClassifier, classifier_input
from scoresde.cli import main
from scoresde.config import load_config
from scoresde.data import toy_data
from scoresde.guidance import ClassifierFreeGuidedModel, ClassifierGuidedModel, LabelConditionedModel, MixtureClassifier
from scoresde.nets import ClassifierCNN, ClassifierMLP, UNet
from scoresde.samplers import sample
from scoresde.train import Trainer
from scoresde.workdir import classifier_from_workdir

F64 = torch.float64


def test_classifier_input_is_the_same_for_every_sde():
    """x_t and t of VE, VP and sub-VP at the same VE-space state x_ve and level sigma~ give the same network input."""
    x_ve = torch.randn(4, 3, dtype=F64)
    for sigma_tilde in (0.05, 1.0, 20.0):
        ref = None
        for sde in (s.VESDE(), s.VPSDE(), s.SubVPSDE()):
            t = sde.t_from_sigma_tilde(torch.full((4,), sigma_tilde, dtype=F64))
            alpha, _ = sde.marginal(t)
            xin, c = classifier_input(sde, alpha[:, None] * x_ve, t)
            torch.testing.assert_close(c, torch.full((4,), np.log(sigma_tilde), dtype=F64), rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(xin, x_ve / np.sqrt(1 + sigma_tilde**2), rtol=1e-10, atol=1e-10)
            ref = xin if ref is None else ref


def test_classifier_nets_use_the_noise_level_and_take_any_size():
    torch.manual_seed(0)
    cnn = ClassifierCNN(in_channels=3, num_classes=4, nf=8)
    for hw in ((8, 8), (7, 12)):
        x = torch.randn(2, 3, *hw)
        out = cnn(x, torch.zeros(2))
        assert out.shape == (2, 4)
        assert not torch.allclose(out, cnn(x, torch.full((2,), 3.0)))
    mlp = ClassifierMLP(dim=2, num_classes=8, embedding_type="fourier")
    x = torch.randn(5, 2)
    assert mlp(x, torch.zeros(5)).shape == (5, 8) and not torch.allclose(mlp(x, torch.zeros(5)), mlp(x, torch.ones(5)))


def _gmm_classifier_cfg(extra=()):
    return load_config(None, ["data.dataset=gmm", "sde.name=vp", "model.arch=classifier_mlp",
                              "model.kwargs={num_classes: 8, hidden: 64, layers: 3}", "training.loss=classifier",
                              "training.batch_size=256", "training.lr=3.0e-3", "training.warmup=20",
                              "training.ema_rate=0.99", "training.snapshot_every=1000", "training.tensorboard=false",
                              *extra])


def test_trained_classifier_approaches_the_exact_responsibilities(tmp_path):
    """The minimiser of the classifier loss is p_t(y | x_t): trained on the 8-mode mixture, its probabilities
    approach the mixture's exact responsibilities (MixtureClassifier) at every noise level."""
    cfg = _gmm_classifier_cfg()
    g = torch.Generator().manual_seed(0)
    x, y = toy_data("gmm", 20000, g, return_labels=True)
    trainer = Trainer(cfg, tmp_path / "c", data=x, labels=y, device="cpu", progress=False)
    trainer.train(300)
    clf, _, _, _ = classifier_from_workdir(tmp_path / "c", device="cpu")
    sde = trainer.sde
    exact = MixtureClassifier(s.load_problem("gmm8"), sde)
    problem = s.load_problem("gmm8")
    x0 = problem.sample(2000, generator=torch.Generator().manual_seed(1))
    tvs = []
    for t in (0.05, 0.2, 0.4):
        tt = torch.full((2000,), t, dtype=F64)
        xt = sde.marginal_sample(x0, tt, torch.randn(x0.shape, generator=g, dtype=F64))
        alpha, sigma = sde.marginal(tt)
        r = problem.responsibilities(xt, alpha, sigma)
        with torch.no_grad():
            p = torch.softmax(clf.logits(xt.float(), tt).double(), -1)
        tvs.append(float(0.5 * (p - r).abs().sum(-1).mean()))
        k = torch.full((2000,), 3)
        assert exact.log_prob(xt, tt, k).shape == (2000,)
    # untrained: TV 0.86 / 0.50 / 0.26 at t = 0.05 / 0.2 / 0.4; measured 0.053 / 0.043 / 0.027 after 300 steps
    assert max(tvs) < 0.1, tvs


def test_classifier_training_resumes_exactly(tmp_path):
    cfg = _gmm_classifier_cfg(["training.snapshot_every=3"])
    x, y = toy_data("gmm", 2000, torch.Generator().manual_seed(0), return_labels=True)
    Trainer(cfg, tmp_path / "a", data=x, labels=y, device="cpu", progress=False).train(6)
    Trainer(cfg, tmp_path / "b", data=x, labels=y, device="cpu", progress=False).train(3)
    b = Trainer(cfg, tmp_path / "b", data=x, labels=y, device="cpu", progress=False)
    assert b.step == 3
    b.train(6)
    a = Trainer(cfg, tmp_path / "a", data=x, labels=y, device="cpu", progress=False)
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(va, vb), k


def test_unet_label_embedding_is_additive_and_off_by_default():
    kw = dict(in_channels=1, nf=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), image_size=8, dropout=0.0)
    torch.manual_seed(0)
    plain = UNet(**kw)
    torch.manual_seed(0)
    cond = UNet(**kw, num_classes=10)
    assert set(cond.state_dict()) - set(plain.state_dict()) == {"label_embed.weight"}
    assert set(plain.state_dict()) <= set(cond.state_dict())  # old checkpoints' keys unchanged
    x, c = torch.randn(3, 1, 8, 8), torch.rand(3)
    with torch.no_grad():
        torch.testing.assert_close(cond(x, c), cond(x, c, torch.full((3,), 10)))  # None = the null label
        cond.label_embed.weight.zero_()
        cond.load_state_dict({**cond.state_dict(), **{k: v for k, v in plain.state_dict().items()}})
        torch.testing.assert_close(cond(x, c, torch.tensor([1, 2, 3])), plain(x, c))  # zero embedding: the plain net
    with pytest.raises(ValueError, match="num_classes"):
        plain(x, c, torch.zeros(3, dtype=torch.long))


def _tiny_unet_workdir(path, extra=()):
    kwargs = "model.kwargs={nf: 8, ch_mult: [1], num_res_blocks: 1, attn_resolutions: [], image_size: 8, dropout: 0.0"
    kwargs += (", num_classes: 10}" if "cfg" in extra else "}")
    cfg = load_config(None, ["data.dataset=digits", "model.arch=unet", "training.batch_size=8", "training.n_iters=2",
                             "training.label_dropout=0.2", "training.tensorboard=false", "sampling.sampler=ddim",
                             "sampling.steps=3", kwargs] if "cfg" in extra else
                      ["data.dataset=digits", "model.arch=unet", "training.batch_size=8", "training.n_iters=2",
                       "training.tensorboard=false", "sampling.sampler=ddim", "sampling.steps=3", kwargs])
    t = Trainer(cfg, path, device="cpu", progress=False)
    t.train(2)  # two steps (label dropout drawn in the CFG run)
    return t


def test_cli_class_conditional_sampling_of_a_workdir(tmp_path, capsys):
    from scoresde.workdir import model_from_workdir

    _tiny_unet_workdir(tmp_path / "cfg", ("cfg",))
    _tiny_unet_workdir(tmp_path / "plain")
    ccfg = load_config(None, ["data.dataset=digits", "model.arch=classifier_cnn", "model.kwargs={num_classes: 10, nf: 8}",
                              "training.loss=classifier", "training.batch_size=8", "training.tensorboard=false"])
    Trainer(ccfg, tmp_path / "clf", device="cpu", progress=False).train(2)
    # classifier-free guidance of the label-conditional model
    out = tmp_path / "c.npz"
    assert main(["sample", "--workdir", str(tmp_path / "cfg"), "--class", "3", "--guidance", "2", "--num", "4",
                 "--no-plot", "--no-progress", "--out", str(out)]) == 0
    model, cfg, shape, _ = model_from_workdir(tmp_path / "cfg", device="cpu")
    guided = ClassifierFreeGuidedModel(LabelConditionedModel(model, None), LabelConditionedModel(model, 3), 2.0)
    from scoresde.samplers import ddim

    with torch.no_grad():
        ref = sample(guided, 4, 0, ddim, shape, steps=3)
    np.testing.assert_allclose(np.load(out)["samples"], ref.samples.numpy(), rtol=0, atol=1e-5)
    assert int(np.load(out)["nfe"]) == 6  # CFG: two evaluations per step
    # classifier guidance with a trained classifier
    assert main(["sample", "--workdir", str(tmp_path / "plain"), "--class", "7", "--guidance", "3", "--classifier",
                 str(tmp_path / "clf"), "--num", "4", "--no-plot", "--no-progress", "--out", str(out)]) == 0
    model, cfg, shape, _ = model_from_workdir(tmp_path / "plain", device="cpu")
    clf, _, _, _ = classifier_from_workdir(tmp_path / "clf", device="cpu")
    with torch.no_grad():
        ref = sample(ClassifierGuidedModel(model, clf, 7, 3.0), 4, 0, ddim, shape, steps=3)
    np.testing.assert_allclose(np.load(out)["samples"], ref.samples.numpy(), rtol=0, atol=1e-5)
    capsys.readouterr()
    bad = tmp_path / "bad.npz"
    for argv, needle in [(["--workdir", str(tmp_path / "plain"), "--class", "3"], "label-conditional"),
                         (["--workdir", str(tmp_path / "cfg"), "--class", "10"], "knows 10 classes"),
                         (["--workdir", str(tmp_path / "plain"), "--class", "10", "--classifier", str(tmp_path / "clf")],
                          "knows 10 classes"),
                         (["--workdir", str(tmp_path / "plain"), "--class", "1", "--classifier", str(tmp_path / "cfg")],
                          "not a classifier"),
                         (["--workdir", str(tmp_path / "clf"), "--num", "2"], "holds a classifier"),
                         (["--workdir", str(tmp_path / "plain"), "--classifier", str(tmp_path / "clf")], "need --class"),
                         (["--problem", "gmm8", "--class", "1", "--classifier", str(tmp_path / "clf")], "--workdir")]:
        assert main(["sample", *argv, "--no-plot", "--out", str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert not bad.exists()
    # the classifier's gradient is the gradient of its log-probability (autograd, any SDE)
    x, t = torch.randn(2, 1, 8, 8), torch.full((2,), 0.3, dtype=F64)
    xg = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(clf.log_prob(xg, t, 7).sum(), xg)
    torch.testing.assert_close(clf.grad_log_prob(x, t, 7), auto)
    assert isinstance(clf, NoiseConditionalClassifier)

"""diffusers / k-diffusion interop (issue 13): from_diffusers, the SEEDS schedulers, from_denoiser.

Every diffusers object is a random-weight tiny UNet2DModel written by the test with save_pretrained; nothing is
downloaded. Skipped when diffusers is not installed (an optional extra).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffusers import DDPMPipeline, DDPMScheduler, ScoreSdeVeScheduler, UNet2DModel  # noqa: E402

from scoresde.interop import DiffusersError, from_diffusers  # noqa: E402
from scoresde.interop.schedulers import (  # noqa: E402
    MS2Scheduler,
    MS3Scheduler,
    MultistepSDEScheduler,
    SEEDS1Scheduler,
    SEEDS2Scheduler,
    SEEDS3Scheduler,
    SEEDSScheduler,
)
from scoresde.samplers import ms2, ms3, pc_sample, seeds, seeds_2  # noqa: E402
from scoresde.samplers.pc import ancestral_sampling  # noqa: E402
from scoresde.samplers.seeds import MEASURED_DEFAULTS as SEEDS_DEFAULTS  # noqa: E402
from scoresde.schedules import uniform_time  # noqa: E402
from scoresde.sde import VESDE, DiscreteVPSDE  # noqa: E402

N_TRAIN = 20          # training timesteps of the tiny schedules: a full DDPM chain is 20 UNet calls
SHAPE = (2, 3, 8, 8)  # batch, channels, sample_size


def tiny_unet(seed: int = 0, **kw) -> UNet2DModel:
    torch.manual_seed(seed)
    args = dict(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                norm_num_groups=4, attention_head_dim=8)
    args.update(kw)
    unet = UNet2DModel(**args).eval()
    with torch.no_grad():  # random weights everywhere (diffusers zero-initialises nothing that matters, but be sure)
        for p in unet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return unet


def save_pipeline(path, unet, **sched_kw):
    kw = dict(num_train_timesteps=N_TRAIN, clip_sample=False)
    kw.update(sched_kw)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(**kw)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory, unet):
    return save_pipeline(tmp_path_factory.mktemp("pipe") / "ddpm", unet)


class Replay:
    """A NoiseSource stand-in drawing torch.randn from a generator, in the order diffusers' loop draws."""

    def __init__(self, generator: torch.Generator, shape, dtype=torch.float32):
        self.g, self.shape, self.dtype = generator, shape, dtype

    def draw(self) -> torch.Tensor:
        return torch.randn(self.shape, generator=self.g, dtype=self.dtype)

    def __call__(self, *_):
        return self.draw()


# ---- from_diffusers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_schedule_is_diffusers_alphas_cumprod(schedule):
    """The SDE's alpha_t^2 at t = (i + 1) / N is the scheduler's float32 alphas_cumprod[i], bit for bit."""
    from scoresde.interop import sde_from_scheduler_config

    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=schedule, beta_start=0.00085, beta_end=0.012)
    sde, prediction, _ = sde_from_scheduler_config(ref.config)
    assert isinstance(sde, DiscreteVPSDE) and prediction == "eps"
    t = (torch.arange(1000, dtype=torch.float64) + 1) / 1000
    a, s = sde.marginal(t)
    assert torch.equal(sde.alphas_cumprod, ref.alphas_cumprod.double())
    assert torch.allclose(a**2, ref.alphas_cumprod.double(), rtol=1e-13, atol=0)
    assert torch.allclose(a**2 + s**2, torch.ones_like(a), atol=1e-15)
    assert torch.allclose(sde.timestep(t), torch.arange(1000, dtype=torch.float64), atol=1e-9)


def test_eps_equals_unet_output_at_integer_timesteps(pipe_dir, unet):
    model = from_diffusers(pipe_dir)
    assert model.shape == (3, 8, 8) and model.prediction == "eps"
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ts = torch.tensor([0, 7, 23, N_TRAIN - 1])
    with torch.no_grad():
        ref = unet(x, ts).sample
        out = model.eps(x, (ts.double() + 1) / N_TRAIN)
    assert torch.equal(out, ref)
    assert model.nfe == 1


@pytest.mark.parametrize("prediction_type", ["sample", "v_prediction"])
def test_denoised_of_sample_and_v_models(tmp_path, unet, prediction_type):
    """x_0 as diffusers' DDPMScheduler forms it: the output itself (sample) or sqrt(abar) x - sqrt(1 - abar) v."""
    model = from_diffusers(save_pipeline(tmp_path / "p", unet, prediction_type=prediction_type))
    ref = DDPMScheduler(num_train_timesteps=N_TRAIN)
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    ts = torch.tensor([0, 11, N_TRAIN - 1])
    with torch.no_grad():
        out = unet(x, ts).sample
        D = model.denoised(x, (ts.double() + 1) / N_TRAIN)
    abar = ref.alphas_cumprod[ts].view(-1, 1, 1, 1)
    x0 = out if prediction_type == "sample" else abar.sqrt() * x - (1 - abar).sqrt() * out
    assert torch.allclose(D, x0, atol=2e-6, rtol=1e-5)


def _ddpm_loop(unet, sched, g, dtype):
    x = torch.randn(SHAPE, generator=g, dtype=dtype)
    states = []
    with torch.no_grad():
        for t in sched.timesteps:
            states.append(x)
            x = sched.step(unet(x, t).sample, t, x, generator=g).prev_sample
    return states, x


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ancestral_sampler_equals_ddpm_scheduler_loop(tmp_path, unet, prediction_type):
    """scoresde's ancestral predictor on the chain's own times = diffusers' DDPMScheduler loop, step for step.

    In float64 (UNet, states and the scheduler's alphas_cumprod) to 1e-10. In float32 the two differ by ~1e-5:
    diffusers forms beta_t = 1 - abar_t / abar_{t-1} in float32, which loses ~1e-3 of beta_t = 1e-4 to rounding
    (scoresde's coefficients are float64); that gap is asserted too, so a real change of either side shows.
    """
    path = save_pipeline(tmp_path / "p", unet, prediction_type=prediction_type)
    model = from_diffusers(path)
    grid = uniform_time(model.sde, N_TRAIN, 0.0)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        sched = DDPMScheduler.from_pretrained(path / "scheduler")
        sched.set_timesteps(N_TRAIN)
        net = model.unet.to(dtype)
        if dtype == torch.float64:
            sched.alphas_cumprod, sched.one = sched.alphas_cumprod.double(), torch.tensor(1.0, dtype=dtype)
        theirs, x = _ddpm_loop(net, sched, torch.Generator().manual_seed(3), dtype)
        g = torch.Generator().manual_seed(3)
        xT = torch.randn(SHAPE, generator=g, dtype=dtype)
        ours = []
        res = pc_sample(model, xT, Replay(g, SHAPE, dtype), predictor=ancestral_sampling, corrector=None, grid=grid,
                        callback=lambda s, ours=ours: ours.append(s["x"]))
        assert res.nfe == N_TRAIN and len(ours) == N_TRAIN
        for a, b in zip(ours, theirs):
            assert torch.allclose(a, b, atol=tol, rtol=tol)
        assert torch.allclose(res.samples, x, atol=tol, rtol=tol)
        assert float(x.abs().max()) > 0.1  # a non-trivial comparison
    model.unet.float()


def test_bare_unet_folder_and_errors(tmp_path, unet, pipe_dir):
    # the unet/ folder of a pipeline finds ../scheduler/; a lone folder needs scheduler=
    m = from_diffusers(pipe_dir / "unet")
    assert isinstance(m.sde, DiscreteVPSDE) and m.sde.N == N_TRAIN
    lone = tmp_path / "lone"
    unet.save_pretrained(lone)
    with pytest.raises(DiffusersError, match="scheduler"):
        from_diffusers(lone)
    cfg = DDPMScheduler(num_train_timesteps=N_TRAIN, prediction_type="v_prediction").config
    m = from_diffusers(lone, scheduler=cfg)
    assert m.prediction == "v"
    with pytest.raises(DiffusersError, match="no such directory"):
        from_diffusers(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DiffusersError, match="neither a diffusers pipeline"):
        from_diffusers(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model_index.json").write_text(json.dumps({"_class_name": "X", "transformer": ["diffusers", "DiT"]}))
    with pytest.raises(DiffusersError, match="no unet component"):
        from_diffusers(bad)
    with pytest.raises(DiffusersError, match="rescale_betas_zero_snr"):
        from_diffusers(lone, scheduler=dict(cfg, rescale_betas_zero_snr=True))


def test_score_sde_ve_pipeline_layout(tmp_path):
    """A ScoreSdeVeScheduler config: the VE SDE; the UNet is fed sigma_t and returns the score."""
    unet = tiny_unet(1, time_embedding_type="fourier", flip_sin_to_cos=True)
    path = tmp_path / "ve"
    unet.save_pretrained(path / "unet")
    ScoreSdeVeScheduler(sigma_min=0.01, sigma_max=50.0, sampling_eps=1e-5).save_pretrained(path / "scheduler")
    model = from_diffusers(path / "unet")
    assert isinstance(model.sde, VESDE) and model.prediction == "score" and model.sde.sigma_max == 50.0
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([0.3, 0.9], dtype=torch.float64)
    with torch.no_grad():
        ref = unet(x, model.sde.sigma(t).float()).sample
        assert torch.equal(model.score(x, t), ref)


# ---- the SEEDS schedulers -----------------------------------------------------------------------------
def _scheduler_loop(unet, sched, steps, g):
    sched.set_timesteps(steps)
    x = torch.randn(SHAPE, generator=g) * sched.init_noise_sigma
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(sched.scale_model_input(x, t), t).sample, t, x, generator=g).prev_sample
    return x


@pytest.mark.parametrize("cls,eta,form", [(SEEDS1Scheduler, 1.0, "data"), (SEEDS2Scheduler, 1.0, "data"),
                                          (SEEDS3Scheduler, 1.0, "data"), (SEEDS2Scheduler, 0.5, "noise"),
                                          (SEEDS3Scheduler, 0.0, "data")])
def test_scheduler_equals_scoresde_seeds(pipe_dir, unet, cls, eta, form):
    """The scheduler in a diffusers loop gives scoresde's seeds() samples on the same model, start and noise."""
    steps = 4
    sched = cls.from_config(DDPMScheduler.from_pretrained(pipe_dir / "scheduler").config, eta=eta, solver_form=form)
    theirs = _scheduler_loop(unet, sched, steps, torch.Generator().manual_seed(5))
    k = cls.fixed_order
    assert len(sched.timesteps) == k * steps + 1 and sched.order == k
    model = from_diffusers(pipe_dir)
    g = torch.Generator().manual_seed(5)
    xT = torch.randn(SHAPE, generator=g)
    res = seeds(model, xT, order=k, steps=steps, eta=eta, grid=sched.config.grid, prediction=form, denoise=True,
                draw=Replay(g, SHAPE))
    assert res.nfe == len(sched.timesteps)
    assert torch.allclose(theirs, res.samples, atol=1e-5, rtol=1e-5)
    assert float(theirs.abs().max()) > 0.1


def test_scheduler_in_a_stock_ddpm_pipeline(pipe_dir):
    """pipe.scheduler = SEEDS2Scheduler.from_config(pipe.scheduler.config) in a stock DDPMPipeline."""
    pipe = DDPMPipeline.from_pretrained(pipe_dir)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = SEEDS2Scheduler.from_config(pipe.scheduler.config)
    out = pipe(batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(6), output_type="pt").images
    out = torch.as_tensor(np.asarray(out))
    if out.shape[-1] == 3:  # diffusers < 0.31 returns NHWC numpy whatever output_type
        out = out.permute(0, 3, 1, 2)
    model = from_diffusers(pipe_dir)
    g = torch.Generator().manual_seed(6)
    # the scheduler's defaults are the registry's seeds2 defaults (quadratic grid, eta 0.5)
    res = seeds_2(model, torch.randn(SHAPE, generator=g), steps=3, denoise=True, draw=Replay(g, SHAPE))
    assert torch.allclose(out, (res.samples / 2 + 0.5).clamp(0, 1), atol=1e-5)
    assert 0.05 < float(((out > 0) & (out < 1)).float().mean())  # some pixels inside the clamp


def test_scheduler_config_round_trip(tmp_path):
    sched = SEEDS3Scheduler(num_train_timesteps=N_TRAIN, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                            eta=0.7, grid="time", solver_form="noise", s_noise=0.9, t_end=0.05, denoise=False)
    sched.save_config(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert saved["_class_name"] == "SEEDS3Scheduler" and saved["solver_order"] == 3
    back = SEEDS3Scheduler.from_pretrained(tmp_path)
    public = {k: v for k, v in sched.config.items() if not k.startswith("_")}
    assert {k: v for k, v in back.config.items() if not k.startswith("_")} == public
    sched.set_timesteps(5)
    back.set_timesteps(5)
    assert torch.equal(sched.timesteps, back.timesteps) and len(sched.timesteps) == 15  # no denoise entry
    # a subclass fixes its order; the generic class reads it from the config
    assert SEEDS1Scheduler.from_config(sched.config).order == 1
    assert SEEDSScheduler.from_config(sched.config).order == 3
    # a stock scheduler's config: the schedule keys carry over, DDPM-only keys are ignored
    ddpm = DDPMScheduler(num_train_timesteps=N_TRAIN, beta_schedule="scaled_linear", prediction_type="sample")
    s2 = SEEDS2Scheduler.from_config(ddpm.config)
    assert s2.config.beta_schedule == "scaled_linear" and s2.config.prediction_type == "sample"
    assert torch.equal(s2.alphas_cumprod, ddpm.alphas_cumprod)
    with pytest.raises(ValueError, match="grid"):
        SEEDS2Scheduler(grid="nope")


@pytest.mark.parametrize("cls,k", [(SEEDS1Scheduler, 1), (SEEDS2Scheduler, 2), (SEEDS3Scheduler, 3)])
def test_scheduler_defaults_are_the_samplers_measured_defaults(cls, k):
    """Unset eta / grid: the registry's measured defaults of seedsK; from_config into another order takes its own."""
    want = {"eta": 1.0, "grid": "logsnr", **SEEDS_DEFAULTS[k]}
    sched = cls(num_train_timesteps=N_TRAIN)
    assert {"eta": sched.config.eta, "grid": sched.config.grid} == want
    other = SEEDS1Scheduler if k > 1 else SEEDS3Scheduler
    moved = other.from_config(sched.config)
    assert (moved.config.eta, moved.config.grid) == ((1.0, "logsnr") if k > 1 else (0.5, "quadratic"))
    assert (cls.from_config(moved.config).config.eta, cls.from_config(moved.config).config.grid) == \
        (want["eta"], want["grid"])
    chosen = cls(num_train_timesteps=N_TRAIN, eta=0.3, grid="time")
    assert (chosen.config.eta, chosen.config.grid) == (0.3, "time")
    assert (other.from_config(chosen.config).config.eta, other.from_config(chosen.config).config.grid) == (0.3, "time")


def test_scheduler_add_noise_matches_ddpm():
    ddpm = DDPMScheduler(num_train_timesteps=N_TRAIN)
    ours = SEEDS1Scheduler.from_config(ddpm.config)
    x0 = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(7))
    n = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(8))
    ts = torch.tensor([0, 17, N_TRAIN - 1])
    assert torch.allclose(ours.add_noise(x0, n, ts), ddpm.add_noise(x0, n, ts), atol=1e-6)


# ---- the multistep (ms2 / ms3) schedulers ------------------------------------------------------------
@pytest.mark.parametrize("cls,eta,grid,variant", [(MS2Scheduler, 1.0, "logsnr", None), (MS3Scheduler, 1.0, "logsnr", None),
                                                  (MS2Scheduler, 0.0, "time", "taylor"), (MS3Scheduler, 0.5, "edm", None)])
def test_ms_scheduler_equals_scoresde_multistep(pipe_dir, unet, cls, eta, grid, variant):
    """MS2/MS3Scheduler in a diffusers loop give scoresde's ms2() / ms3() samples on the same model, start and noise."""
    steps = 5
    sched = cls.from_config(DDPMScheduler.from_pretrained(pipe_dir / "scheduler").config, eta=eta, grid=grid,
                            ms_variant=variant)
    theirs = _scheduler_loop(unet, sched, steps, torch.Generator().manual_seed(9))
    assert len(sched.timesteps) == steps + 1 and sched.order == 1 and sched.step_index == steps + 1
    model = from_diffusers(pipe_dir)
    g = torch.Generator().manual_seed(9)
    xT = torch.randn(SHAPE, generator=g)
    fn = ms2 if cls is MS2Scheduler else ms3
    kw = {"variant": variant} if variant else {}
    res = fn(model, xT, steps=steps, eta=eta, grid=grid, denoise=True, draw=Replay(g, SHAPE), **kw)
    assert res.nfe == len(sched.timesteps)
    assert torch.allclose(theirs, res.samples, atol=1e-5, rtol=1e-5)
    assert float(theirs.abs().max()) > 0.1
    # the history matters: a third-order step differs from the second-order one on the same loop
    if cls is MS3Scheduler:
        other = _scheduler_loop(unet, MS2Scheduler.from_config(sched.config, ms_variant="taylor"), steps,
                                torch.Generator().manual_seed(9))
        assert float((other - theirs).abs().max()) > 1e-4


def test_ms_scheduler_in_a_stock_ddpm_pipeline(pipe_dir):
    """pipe.scheduler = MS2Scheduler.from_config(pipe.scheduler.config) in a stock DDPMPipeline."""
    pipe = DDPMPipeline.from_pretrained(pipe_dir)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = MS2Scheduler.from_config(pipe.scheduler.config)
    out = pipe(batch_size=2, num_inference_steps=4, generator=torch.Generator().manual_seed(10), output_type="pt").images
    out = torch.as_tensor(np.asarray(out))
    if out.shape[-1] == 3:
        out = out.permute(0, 3, 1, 2)
    model = from_diffusers(pipe_dir)
    g = torch.Generator().manual_seed(10)
    res = ms2(model, torch.randn(SHAPE, generator=g), steps=4, denoise=True, draw=Replay(g, SHAPE))
    assert torch.allclose(out, (res.samples / 2 + 0.5).clamp(0, 1), atol=1e-5)
    assert 0.05 < float(((out > 0) & (out < 1)).float().mean())


def test_ms_scheduler_config_round_trip(tmp_path):
    sched = MS3Scheduler(num_train_timesteps=N_TRAIN, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                         eta=0.3, grid="quadratic", s_noise=0.9, t_end=0.05, denoise=False)
    sched.save_config(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert saved["_class_name"] == "MS3Scheduler" and saved["solver_order"] == 3
    back = MS3Scheduler.from_pretrained(tmp_path)
    public = {k: v for k, v in sched.config.items() if not k.startswith("_")}
    assert {k: v for k, v in back.config.items() if not k.startswith("_")} == public
    sched.set_timesteps(6)
    back.set_timesteps(6)
    assert torch.equal(sched.timesteps, back.timesteps) and len(sched.timesteps) == 6  # no denoise entry
    assert MS2Scheduler.from_config(sched.config).solver_order == 2
    assert MultistepSDEScheduler.from_config(sched.config).solver_order == 3
    assert MultistepSDEScheduler().solver_order == 2 and MultistepSDEScheduler().variant == "phi1"
    assert MS3Scheduler().variant == "taylor"
    ddpm = DDPMScheduler(num_train_timesteps=N_TRAIN, beta_schedule="scaled_linear", prediction_type="sample")
    s2 = MS2Scheduler.from_config(ddpm.config)
    assert s2.config.beta_schedule == "scaled_linear" and s2.config.prediction_type == "sample"
    assert torch.equal(s2.alphas_cumprod, ddpm.alphas_cumprod)
    x0 = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(7))
    n = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(8))
    ts = torch.tensor([0, 9, N_TRAIN - 1])
    assert torch.allclose(s2.add_noise(x0, n, ts), ddpm.add_noise(x0, n, ts), atol=1e-6)
    for kw, msg in (({"ms_variant": "phi1"}, "order 2 only"), ({"eta": 2.0}, "eta"), ({"grid": "nope"}, "grid")):
        with pytest.raises(ValueError, match=msg):
            MS3Scheduler(**kw)
    with pytest.raises(ValueError, match="solver_order"):
        MultistepSDEScheduler(solver_order=1)
    with pytest.raises(ValueError, match="set_timesteps"):
        MS2Scheduler().step(x0, 0, x0)


# ---- the command line: --model diffusers:PATH -------------------------------------------------------------
def run(capsys, *argv):
    from scoresde.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_sample_model_matches_library(tmp_path, capsys, pipe_dir):
    from scoresde.samplers import sample, seeds_1

    out = tmp_path / "s.npz"
    code, stdout, err = run(capsys, "sample", "--model", f"diffusers:{pipe_dir}", "--sampler", "seeds1", "--steps", "3",
                            "--num", "3", "--seed", "2", "--out", str(out), "--no-progress")
    assert code == 0, err
    assert "NFE 3" in stdout
    data = np.load(out)
    ref = sample(from_diffusers(pipe_dir), 3, 2, seeds_1, (3, 8, 8), steps=3)
    assert data["samples"].shape == (3, 3, 8, 8) and int(data["nfe"]) == 3
    np.testing.assert_array_equal(data["samples"], ref.samples.numpy())
    assert out.with_suffix(".png").is_file()


def _tiny_rgb_features(device="cpu", batch_size=64):
    """A fixed random feature map of 3x8x8 uint8 images (16 features, 5 logits): no judge to train."""
    from scoresde.metrics.features import FeatureExtractor

    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 192, generator=g) / 14
    v = torch.randn(5, 16, generator=g)

    def fn(images):
        f = torch.tanh((images.float().flatten(1) / 255) @ w.T)
        return f, f @ v.T

    return FeatureExtractor("tiny_rgb", 16, fn, True, "random test features", batch_size, device)


def test_cli_eval_model_shards_are_sample_model_samples(tmp_path, capsys, pipe_dir, monkeypatch):
    """eval --model: the shard images are `scoresde sample --model`'s samples for the same seeds (as uint8), the FID
    against those very samples is 0, and a rerun generates nothing; --workdir with --model, or no --out-dir: one line."""
    from scoresde import registry
    from scoresde.metrics.features import to_uint8

    monkeypatch.setitem(registry.FEATURES, "tiny_rgb", _tiny_rgb_features)
    spec = f"diffusers:{pipe_dir}"
    ref = tmp_path / "s.npz"
    code, _, err = run(capsys, "sample", "--model", spec, "--sampler", "ms2", "--steps", "3", "--num", "5", "--seed",
                       "4", "--batch-size", "2", "--out", str(ref), "--no-progress", "--no-plot")
    assert code == 0, err
    out = tmp_path / "eval"
    argv = ["eval", "--model", spec, "--num", "5", "--shard-size", "2", "--batch-size", "2", "--features", "tiny_rgb",
            "--ref", str(ref), "--sampler", "ms2", "--steps", "3", "--seed", "4", "--kid-subsets", "2",
            "--kid-subset-size", "3", "--out-dir", str(out), "--no-progress"]
    code, stdout, err = run(capsys, *argv)
    assert code == 0, err
    assert stdout.startswith(spec) and "NFE 3" in stdout
    images = np.concatenate([np.load(out / f"shard_{k:06d}.npz")["images"] for k in range(3)])
    samples = torch.from_numpy(np.load(ref)["samples"])
    np.testing.assert_array_equal(images, to_uint8(((samples + 1) / 2).clamp(0, 1)).numpy())
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == spec and report["checkpoint_step"] is None and report["sampler"] == "ms2"
    assert report["nfe"] == 3 and abs(report["fid"]) < 1e-6
    code, _, err = run(capsys, *argv)  # finished: nothing generated again, same report
    assert code == 0, err
    assert json.loads((out / "report.json").read_text())["fid"] == report["fid"]
    assert len((out / "generated.log").read_text().splitlines()) == 3  # each shard generated once
    for extra, message in ((["--workdir", str(tmp_path)], "exactly one of"), (["--bpd"], "--bpd")):
        code, _, err = run(capsys, *argv, *extra)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    no_dir = [a for a in argv if a not in ("--out-dir", str(out))]
    code, _, err = run(capsys, *no_dir)
    assert code == 2 and "--out-dir" in err and len(err.strip().splitlines()) == 1


def test_cli_likelihood_and_encode_model(tmp_path, capsys, pipe_dir):
    """--model with --data images (uint8, channels last): the library's bits/dim and encodings of those images."""
    from scoresde.likelihood import bits_per_dim, round_trip

    images = np.random.default_rng(0).integers(0, 256, size=(1, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "img.npy", images)
    common = ["--model", f"diffusers:{pipe_dir}", "--data", str(tmp_path / "img.npy"), "--rtol", "1e-2", "--atol",
              "1e-2", "--no-progress"]
    code, stdout, err = run(capsys, "likelihood", *common, "--out", str(tmp_path / "l.npz"))
    assert code == 0, err
    assert "bits/dim" in stdout
    model = from_diffusers(pipe_dir)
    images01 = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    ref = bits_per_dim(model, images01, divergence="hutchinson", rtol=1e-2, atol=1e-2, t_end=1 / N_TRAIN, batch_size=100)
    np.testing.assert_allclose(np.load(tmp_path / "l.npz")["bpd"], ref.bpd.numpy(), rtol=1e-6)
    code, stdout, err = run(capsys, "encode", *common, "--out", str(tmp_path / "e.npz"))
    assert code == 0, err
    rt = round_trip(model, images01 * 2 - 1, rtol=1e-2, atol=1e-2, t_end=1 / N_TRAIN)
    np.testing.assert_allclose(np.load(tmp_path / "e.npz")["latents"], rt.latent.reshape(1, -1).numpy(), rtol=1e-6)


@pytest.mark.parametrize("argv,message", [
    (["--model", "diffusers"], "--model must be KIND:PATH"),
    (["--model", "onnx:/x"], "--model must be KIND:PATH"),
    (["--model", "diffusers:/nonexistent/dir"], "no such directory"),
    (["--model", "diffusers:{tmp}"], "neither a diffusers pipeline"),
    (["--model", "diffusers:{pipe}", "--sde", "ve"], "comes from the model"),
    (["--model", "diffusers:{pipe}", "--workdir", "w"], "exactly one of"),
])
def test_cli_model_errors_are_one_line(tmp_path, capsys, pipe_dir, argv, message):
    argv = [a.format(tmp=tmp_path, pipe=pipe_dir) for a in argv]
    code, _, err = run(capsys, "sample", *argv, "--out", str(tmp_path / "x.npz"), "--no-progress")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_without_diffusers_says_how_to_install(tmp_path, capsys, pipe_dir, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` now raises ImportError
    code, _, err = run(capsys, "sample", "--model", f"diffusers:{pipe_dir}", "--out", str(tmp_path / "x.npz"))
    assert code == 2 and "diffusers is not installed" in err and "pip install" in err


def test_importing_scoresde_does_not_import_diffusers():
    import subprocess
    import sys

    code = ("import sys, scoresde, scoresde.interop, scoresde.interop.diffusers, scoresde.cli.models\n"
            "assert 'diffusers' not in sys.modules, 'diffusers imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_cli_inpaint_and_colorize_model_match_library(tmp_path, capsys, pipe_dir):
    """--model works where --workdir does: inpaint / colorize a diffusers model equal the library calls on
    from_diffusers(...), and the known pixels (inpaint) / the grey value (colorize) are kept."""
    from scoresde.brownian import NoiseSource
    from scoresde.colorization import colorize, grey_of
    from scoresde.inpainting import inpaint

    model = from_diffusers(pipe_dir)
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    np.save(tmp_path / "x.npy", (images * 255).round().to(torch.uint8).numpy())
    known = ((images * 255).round() / 255) * 2 - 1
    out = tmp_path / "fill.npz"
    code, _, err = run(capsys, "inpaint", "--model", f"diffusers:{pipe_dir}", "--images", str(tmp_path / "x.npy"),
                       "--mask", "lower-half", "--sampler", "seeds1", "--steps", "3", "--seed", "4", "--out", str(out))
    assert code == 0, err
    data = np.load(out)
    mask = torch.as_tensor(data["mask"]).float().expand(3, 3, 8, 8)
    noise = NoiseSource(4, (3, 8, 8), range(3))
    ref = inpaint(model, model.sde.prior_sample(noise.draw()), noise, known=known, mask=mask, base="seeds1", steps=3)
    np.testing.assert_allclose(data["samples"], ref.samples.numpy(), rtol=0, atol=1e-6)
    kept = mask.bool()
    np.testing.assert_allclose(data["samples"][kept.numpy()], known[kept].numpy(), rtol=0, atol=1e-6)
    out = tmp_path / "col.npz"
    code, _, err = run(capsys, "colorize", "--model", f"diffusers:{pipe_dir}", "--images", str(tmp_path / "x.npy"),
                       "--sampler", "seeds1", "--steps", "3", "--seed", "4", "--out", str(out))
    assert code == 0, err
    data = np.load(out)
    grey = torch.as_tensor(data["grey"])
    noise = NoiseSource(4, (3, 8, 8), range(3))
    ref = colorize(model, model.sde.prior_sample(noise.draw()), noise, grey=grey, base="seeds1", steps=3)
    np.testing.assert_allclose(data["samples"], ref.samples.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(grey_of(torch.as_tensor(data["samples"]).double()).numpy(), grey.double().numpy(),
                               rtol=0, atol=1e-5)
    code, _, err = run(capsys, "inpaint", "--model", f"diffusers:{pipe_dir}", "--workdir", str(tmp_path),
                       "--images", str(tmp_path / "x.npy"), "--mask", "lower-half", "--out", str(out))
    assert code == 2 and "not both" in err and len(err.strip().splitlines()) == 1

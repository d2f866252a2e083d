"""Gotta Go Fast adaptive solver: controllers, termination, NFE accounting, batch invariance, and the bias fix."""
from __future__ import annotations

import math

import pytest
import torch
from helpers import SDES

import scoresde as s
from scoresde.brownian import NoiseSource, SampleStreams
from scoresde.parameterization import DenoiserModel, ScoreModel, to_denoiser
from scoresde.quality import mixture_report
from scoresde.samplers import sample
from scoresde.samplers.adaptive import error_norm, ggf_sample, sample_ggf
from scoresde.samplers.controller import ControllerState, GGFController, PIDController

F64 = torch.float64


def _t(*v):
    return torch.tensor(v, dtype=F64)


def _start(sde, n, shape, seed=0, indices=None):
    noise = NoiseSource(seed, shape, range(n) if indices is None else indices, dtype=F64)
    return sde.prior_sample(noise.draw()), noise


# ---- controllers ------------------------------------------------------------------------------
def test_ggf_controller_accept_reject_and_next_step():
    c = GGFController(h_min=1e-4)
    st = c.init(5)
    assert st == ControllerState(1e-4, None)
    err, h, rem = _t(0.5, 1.0, 2.0, 0.0, float("nan")), _t(0.1, 0.1, 0.1, 0.1, 0.1), _t(1, 1, 1, 1, 1)
    acc, h_new, st = c.propose(st, err, h, rem)
    assert acc.tolist() == [True, True, False, True, False]
    torch.testing.assert_close(h_new[:3], 0.9 * 0.1 * _t(0.5, 1.0, 2.0) ** -0.9, rtol=1e-14, atol=0)
    # E = 0: factor unbounded, clipped to the time left after the accepted step
    assert float(h_new[3]) == pytest.approx(0.9)
    assert float(h_new[4]) == pytest.approx(1e-4)  # nan -> rejected, h falls to the floor
    # never past eps: the next step is at most the time left; a finished sample gets h = 0
    acc, h_new, _ = c.propose(c.init(3), _t(0.1, 0.1, 3.0), _t(0.05, 0.2, 0.2), _t(0.06, 0.2, 0.2))
    assert acc.tolist() == [True, True, False]
    assert float(h_new[0]) == pytest.approx(0.01, abs=1e-15) and float(h_new[1]) == 0.0
    assert float(h_new[2]) == pytest.approx(0.9 * 0.2 * 3.0**-0.9)
    # at the floor a step is accepted whatever its error (no stall), and h stays >= h_min
    acc, h_new, _ = c.propose(c.init(2), _t(1e6, 1e6), _t(1e-4, 2e-4), _t(1.0, 1.0))
    assert acc.tolist() == [True, False] and torch.all(h_new >= 1e-4)
    # a run's floor is passed to init (the larger of the two wins), never written onto the controller
    st = c.init(2, h_min=1e-3)
    assert st.h_min == 1e-3 and c.h_min == 1e-4 and c.init(2, h_min=1e-6).h_min == 1e-4
    acc, h_new, _ = c.propose(st, _t(1e6, 1e6), _t(1e-3, 2e-3), _t(1.0, 1.0))
    assert acc.tolist() == [True, False] and torch.all(h_new >= 1e-3)


def test_pid_controller_formula_and_history():
    # pure I controller = GGF's rule with theta = safety, r = 1/order
    pid, ggf = PIDController(order=1 / 0.9, factormin=1e-6, factormax=1e6), GGFController()
    err, h, rem = _t(0.3, 0.8, 1.5), _t(0.01, 0.01, 0.01), _t(1, 1, 1)
    a1, h1, _ = pid.propose(pid.init(3), err, h, rem)
    a2, h2, _ = ggf.propose(ggf.init(3), err, h, rem)
    assert torch.equal(a1, a2)
    torch.testing.assert_close(h1, h2, rtol=1e-12, atol=0)
    # full PID: factor = safety E_n^(-b1/k) E_(n-1)^(-b2/k) E_(n-2)^(-b3/k) over accepted errors
    p, i, d, k = 0.2, 0.4, 0.1, 2.0
    pid = PIDController(pcoeff=p, icoeff=i, dcoeff=d, order=k, factormin=1e-3, factormax=1e3)
    st = pid.init(1)
    one, rem1 = _t(1.0), _t(10.0)
    errs = [0.5, 0.25, 2.0, 0.8]  # the third is rejected and must not enter the history
    hs, states = [], [st]
    for e in errs:
        _, hn, st = pid.propose(st, _t(e), one * 0.01, rem1, torch.tensor([0]))
        hs.append(float(hn) / 0.01)
        states.append(st)
    # the history lives in the states, each left as it was: the first is still all ones
    assert torch.equal(states[0].history, torch.ones(1, 2, dtype=F64))
    torch.testing.assert_close(states[2].history, _t(0.25, 0.5)[None], rtol=0, atol=0)
    assert torch.equal(states[3].history, states[2].history)  # the rejection left it as it was
    assert not hasattr(pid, "_prev")
    # replaying from an earlier state gives the same step: nothing was kept on the controller
    _, hn, _ = pid.propose(states[1], _t(0.25), one * 0.01, rem1, torch.tensor([0]))
    assert float(hn) / 0.01 == hs[1]
    with pytest.raises(ValueError, match="init"):
        pid.propose(pid.init(1), _t(0.5, 0.5), _t(0.01, 0.01), _t(1.0, 1.0), torch.tensor([0, 1]))
    b1, b2, b3 = p + i + d, -(p + 2 * d), d
    assert hs[0] == pytest.approx(0.9 * 0.5 ** (-b1 / k))
    assert hs[1] == pytest.approx(0.9 * 0.25 ** (-b1 / k) * 0.5 ** (-b2 / k))
    assert hs[2] == pytest.approx(min(0.9, 0.9 * 2.0 ** (-1 / k)))  # rejection: integral term, capped
    assert hs[3] == pytest.approx(0.9 * 0.8 ** (-b1 / k) * 0.25 ** (-b2 / k) * 0.5 ** (-b3 / k))


def test_error_norms():
    e = torch.tensor([[3.0, 4.0, 0.0, 0.0]], dtype=F64)
    assert float(error_norm(e, "l2")) == 5.0
    assert float(error_norm(e, "l2_scaled")) == 2.5
    assert float(error_norm(e.reshape(1, 2, 2), "linf")) == 4.0
    with pytest.raises(ValueError, match="unknown error norm"):
        error_norm(e, "l1")


# ---- the solver -------------------------------------------------------------------------------
class Recorder:
    """Records the batch after each attempt (x_next, t_next) and, separately, the callback_state keys."""

    def __init__(self):
        self.t, self.rows, self.x, self.errors, self.states = [], [], [], [], []

    def __call__(self, state):
        self.t.append(state["t_next"].clone())
        self.rows.append(state["rows"].clone())
        self.x.append(state["x_next"].clone())
        self.errors.append(state["error"].clone())
        self.states.append({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()})


@pytest.mark.parametrize("sde_name", list(SDES))
def test_never_past_eps_and_finished_samples_stay_finished(sde_name):
    sde = SDES[sde_name]()
    model = s.ExactScoreModel(s.load_problem("gmm2"), sde)
    x, noise = _start(sde, 24, (2,))
    rec = Recorder()
    res = ggf_sample(model, x, noise, rtol=0.1, callback=rec, denoise=False)
    ts = torch.stack(rec.t)  # (iterations, batch)
    assert float(ts.min()) == sde.t_end and torch.all(ts[-1] == sde.t_end)  # lands exactly on eps
    assert torch.all(ts[1:] <= ts[:-1])  # time only decreases
    for i in range(1, len(rec.t)):
        finished = rec.t[i - 1] <= sde.t_end
        assert not bool(torch.isin(torch.nonzero(finished).squeeze(1), rec.rows[i]).any())  # not evaluated
        assert torch.equal(rec.x[i][finished], rec.x[i - 1][finished])  # not moved
    # samples finish at different iterations (per-sample steps), and the result is the last state
    finish = (ts <= sde.t_end).double().argmax(0)
    assert finish.unique().numel() > 1
    assert torch.equal(res.samples, rec.x[-1])
    # the standard callback keys: attempt i, x and t before it (= the batch after attempt i - 1), sigma at t
    st = rec.states
    assert [d["i"] for d in st] == list(range(res.info["iterations"]))
    assert torch.equal(st[0]["x"], x) and torch.all(st[0]["t"] == sde.T)
    for i in range(1, len(st)):
        assert torch.equal(st[i]["x"], rec.x[i - 1]) and torch.equal(st[i]["t"], rec.t[i - 1])
    for d in st:
        assert d["denoised"] is None and torch.equal(d["sigma"], sde.sigma_tilde(d["t"]))
        assert torch.equal(d["sigma_hat"], d["sigma"])
        assert {"h", "accepted", "rows", "error", "x_next", "t_next"} <= set(d)


class CountingModel(ScoreModel):
    """An exact score model that records the batch size of every call."""

    def __init__(self, problem, sde):
        super().__init__(sde, "score")
        self.inner = s.ExactScoreModel(problem, sde)
        self.calls = []

    def predict(self, x, t):
        self.calls.append(x.shape[0])
        return self.inner.predict(x, t)


@pytest.mark.parametrize("denoise", [True, False])
def test_exact_nfe_accounting(denoise):
    sde = s.VPSDE()
    model = CountingModel(s.load_problem("gmm8"), sde)
    x, noise = _start(sde, 40, (2,))
    res = ggf_sample(model, x, noise, rtol=0.05, denoise=denoise)
    info = res.info
    assert res.nfe == len(model.calls) == 2 * info["iterations"] + int(denoise)
    assert info["denoise_nfe"] == int(denoise)
    per = res.nfe_per_sample
    assert torch.equal(per, 2 * (info["accepted_per_sample"] + info["rejected_per_sample"]) + int(denoise))
    assert int(per.sum()) == sum(model.calls)  # every evaluated row is charged to its sample
    assert int(per.max()) == res.nfe  # the slowest sample took part in every batched call
    assert info["accepted"] == int(info["accepted_per_sample"].sum()) and info["rejected"] > 0
    assert int(per.min()) < res.nfe  # finished samples stop being evaluated


@pytest.mark.parametrize("noise_mode", ["bridge", "fresh"])
@pytest.mark.parametrize("sde_name", list(SDES))
def test_batch_invariance(sde_name, noise_mode):
    """Every sample steps on its own: the same samples, bit for bit, and the same per-sample NFE whatever the
    batch size (8, 3 or 1); before the step sizes lived on a grid, a vectorised ulp grew to 0.05 here."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), SDES[sde_name]())
    runs = [sample(model, 8, 3, ggf_sample, (2,), batch_size=b, dtype=torch.float64, noise_mode=noise_mode)
            for b in (8, 3, 1)]
    for r in runs[1:]:
        assert torch.equal(r.samples, runs[0].samples)
        assert torch.equal(r.nfe_per_sample, runs[0].nfe_per_sample)
    other = sample(model, 8, 4, ggf_sample, (2,), batch_size=8, dtype=torch.float64, noise_mode=noise_mode)
    assert not torch.isclose(other.samples, runs[0].samples).any()


def test_no_stall_pathological_model():
    """A score of huge, wildly varying size: every error is enormous; h_min and max_steps end the run."""

    class Wild(ScoreModel):
        def predict(self, x, t):
            return 1e8 * torch.sin(1e4 * x)

    sde = s.VPSDE()
    x, noise = _start(sde, 3, (2,))
    res = ggf_sample(Wild(sde, "score"), x, noise, h_min=0.1, denoise=False)
    # every step that is not at the floor is rejected, steps at the floor are forced through
    acc = res.info["accepted_per_sample"]
    assert torch.all(acc == math.ceil((sde.T - sde.t_end) / 0.1))
    assert res.info["rejected"] > 0 and res.nfe < 200
    x, noise = _start(sde, 3, (2,))
    with pytest.raises(RuntimeError, match="max_steps=7"):
        ggf_sample(Wild(sde, "score"), x, noise, h_min=1e-3, max_steps=7)

    class Nan(ScoreModel):
        def predict(self, x, t):
            return torch.full_like(x, float("nan"))

    x, noise = _start(sde, 3, (2,))
    with pytest.raises(FloatingPointError, match="non-finite"):
        ggf_sample(Nan(sde, "score"), x, noise, h_min=0.1)


@pytest.mark.parametrize("kw, match", [({"rtol": -1}, "rtol"), ({"rtol": 0, "atol": 0}, "both be 0"),
                                       ({"norm": "l3"}, "error norm"), ({"noise_mode": "x"}, "noise mode"),
                                       ({"h_init": 0}, "h_init"), ({"t_end": 2.0}, "t_end")])
def test_bad_input_one_clear_error(kw, match):
    sde = s.VPSDE()
    x, noise = _start(sde, 2, (2,))
    with pytest.raises(ValueError, match=match):
        ggf_sample(s.ExactScoreModel(s.load_problem("gmm2"), sde), x, noise, **kw)


def test_drift_error_only_sees_the_drift_only():
    """With zero drift (VE, zero score) Lamba's estimate is exactly 0; GGF's still sees g(t - h) - g(t)."""

    class Zero(ScoreModel):
        def predict(self, x, t):
            return torch.zeros_like(x)

    sde = s.VESDE(sigma_max=5.0)
    for drift_only in (True, False):
        x, noise = _start(sde, 4, (3,))
        rec = Recorder()
        res = ggf_sample(Zero(sde, "score"), x, noise, drift_error_only=drift_only, callback=rec, denoise=False)
        errs = torch.cat(rec.errors)
        if drift_only:
            assert torch.all(errs == 0) and res.info["rejected"] == 0
            assert res.info["iterations"] == 3  # h_init = 0.01, x10 (factor_max), then the rest to eps
        else:
            assert torch.all(errs > 0)


@pytest.mark.parametrize("sde_name", list(SDES))
def test_error_shrinks_and_nfe_grows_as_tolerance_tightens(sde_name):
    """Sharp Gaussian data, exact score: the variance error at eps falls and the NFE rises with rtol."""
    sde = SDES[sde_name]()
    prob = s.Gaussian([0.5], [0.05])
    model = s.ExactScoreModel(prob, sde)
    m0, v0 = (float(v) for v in prob.marginal_moments(*sde.marginal(sde.t_end)))
    n = 3000
    errs, nfes = [], []
    for rtol in (0.5, 0.2, 0.05):
        x, noise = _start(sde, n, (1,), seed=1)
        res = ggf_sample(model, x, noise, rtol=rtol, atol=1e-3, denoise=False)
        xs = res.samples[:, 0]
        errs.append(abs(float(xs.var()) / v0 - 1))
        nfes.append(float(res.nfe_per_sample.double().mean()))
        assert abs(float(xs.mean()) - m0) < 0.05
    se = math.sqrt(2 / n)
    assert errs[0] > errs[1] + 4 * se and errs[1] > errs[2] + 2 * se and errs[2] < 0.2, errs
    assert nfes[0] < nfes[1] < nfes[2], nfes


@pytest.mark.parametrize("sde_name", list(SDES))
def test_gaussian_moments_at_default_tolerance(sde_name):
    """2-D Gaussian: mean and variance at eps match the closed form; the Tweedie denoise maps to E[x0 | x_eps]."""
    sde = SDES[sde_name]()
    prob = s.Gaussian([0.5, -0.25], [0.3, 0.1])
    model = s.ExactScoreModel(prob, sde)
    n = 2000
    x, noise = _start(sde, n, (2,), seed=2)
    res = ggf_sample(model, x, noise, rtol=0.02, denoise=False)
    m0, v0 = prob.marginal_moments(*sde.marginal(sde.t_end))
    assert torch.all((res.samples.mean(0) - m0).abs() < 4 * (v0 / n).sqrt())
    assert torch.all((res.samples.var(0) / v0 - 1).abs() < 0.1)
    den = model.denoised(res.samples, sde.t_end)
    x, noise = _start(sde, n, (2,), seed=2)
    torch.testing.assert_close(ggf_sample(model, x, noise, rtol=0.02).samples, den, rtol=1e-12, atol=1e-12)


def test_bias_fix_on_sharp_mixture():
    """THE bias test: gmm8 (VP, exact score). Bridge retries keep the light-mode weight at 1/12;
    fresh noise after each rejection visibly moves it (measured: 0.109 at rtol 0.05, 4000 samples)."""
    prob = s.load_problem("gmm8")
    sde = s.VPSDE()
    model = s.ExactScoreModel(prob, sde)
    n = 2500
    light = {}
    for mode in ("bridge", "fresh"):
        x, noise = _start(sde, n, (2,), seed=0)
        res = ggf_sample(model, x, noise, rtol=0.05, noise_mode=mode)
        light[mode] = float(mixture_report(prob, res.samples).weights[1::2].mean())
    # Monte-Carlo sd of the mean light weight: the 4 light modes hold 1/3 of the mass together
    sd = math.sqrt((1 / 3) * (2 / 3) / n) / 4
    assert abs(light["bridge"] - 1 / 12) < 3 * sd, light
    assert abs(light["fresh"] - 1 / 12) > 6 * sd, light


# ---- k-diffusion entry point ------------------------------------------------------------------
def test_k_diffusion_entry_point():
    """sample_ggf(D, x, sigmas) runs GGF on the VE SDE spanned by sigmas; the samples match E[x0 | x_sigma_min]."""
    prob = s.Gaussian([0.5, -0.25], [0.3, 0.1])
    denoiser = to_denoiser(s.ExactScoreModel(prob, s.VESDE(sigma_min=0.001, sigma_max=80.0)))
    n = 1000
    x = 20.0 * torch.randn(n, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    sigmas = torch.tensor([20.0, 5.0, 1.0, 0.1, 0.01, 0.0], dtype=F64)
    ve = s.VESDE(sigma_min=0.01, sigma_max=20.0, t_end=0.0)
    seen, states = [], []

    def cb(d):
        seen.append(ve.sigma(d["t_next"]))
        states.append(d)

    out = sample_ggf(denoiser, x, sigmas, seed=7, rtol=0.02, disable=True, callback=cb)
    # the wiring: GGF over VE(sigma_min=0.01, sigma_max=20) from t = 1 to 0, Brownian side stream 1 of seed 7
    ref_states = []
    ref = ggf_sample(DenoiserModel(denoiser, ve), x, SampleStreams(7, (2,), n, stream=1, dtype=F64), rtol=0.02,
                     callback=ref_states.append)
    assert torch.equal(out, ref.samples)
    # after each attempt the noise levels reached lie in [sigma_min, sigma_max), the last at sigma_min
    assert float(torch.stack(seen).min()) == pytest.approx(0.01, rel=1e-12)
    assert float(torch.stack(seen).max()) < 20.0
    # the callback gets ggf_sample's keys passed through: the standard ones (x and its sigma before the attempt)
    assert len(states) == len(ref_states) and [d["i"] for d in states] == list(range(len(states)))
    assert torch.equal(states[0]["x"], x) and torch.allclose(states[0]["sigma"], torch.full((n,), 20.0, dtype=F64),
                                                              rtol=1e-12, atol=0)
    for d, r in zip(states, ref_states):
        assert set(d) == set(r) and {"x", "i", "t", "sigma", "sigma_hat", "denoised"} <= set(d)
        assert d["denoised"] is None and torch.equal(d["sigma_hat"], d["sigma"])
        assert torch.equal(d["x"], r["x"]) and torch.equal(d["sigma"], r["sigma"])
    # extra_args reach the denoiser
    out2 = sample_ggf(lambda v, sg, gain: gain * denoiser(v, sg), x, sigmas, extra_args={"gain": 1.0}, seed=7,
                      rtol=0.02, disable=True)
    assert torch.equal(out2, out)
    # ending at sigma = 0.01 plus the final denoise gives E[x0 | x_0.01]: moments in closed form
    var_d = prob.std**4 / (prob.std**2 + 0.01**2)
    assert torch.all((out.mean(0) - prob.mean).abs() < 4 * (var_d / n).sqrt())
    assert torch.all((out.var(0) / var_d - 1).abs() < 0.15)
    with pytest.raises(ValueError, match="sigma_min"):
        sample_ggf(denoiser, x, None, disable=True)


def test_a_run_leaves_its_controller_as_it_was():
    """The controller's state lives in the run (init / propose): a run writes nothing onto the controller,
    so one controller serves runs of any batch size and floor with the same result as a fresh one."""
    sde = s.VPSDE()
    model = s.ExactScoreModel(s.load_problem("gmm2"), sde)
    for make in (lambda: GGFController(h_min=1e-6, factor_max=10.0), lambda: PIDController(order=2.0, h_min=1e-6)):
        shared = make()
        before = dict(vars(shared))
        outs = []
        for n, h_min in ((6, 0.05), (3, None), (6, 0.05)):
            steps = []

            def rec(d, steps=steps):
                ok = d["accepted"]
                steps.append((d["t"][d["rows"][ok]] - d["t_next"][d["rows"][ok]], d["t_next"][d["rows"][ok]]))

            x, noise = _start(sde, n, (2,), seed=3)
            res = ggf_sample(model, x, noise, rtol=0.05, controller=shared, h_min=h_min, denoise=False, callback=rec)
            x, noise = _start(sde, n, (2,), seed=3)
            fresh = ggf_sample(model, x, noise, rtol=0.05, controller=make(), h_min=h_min, denoise=False)
            assert torch.equal(res.samples, fresh.samples) and res.info["iterations"] == fresh.info["iterations"]
            assert vars(shared).keys() == before.keys()
            assert all(vars(shared)[k] == v for k, v in before.items())  # h_min not raised to the run's floor
            # the run's floor holds: no accepted step is shorter than h_min, save a last one ending on t_end
            h = torch.cat([a for a, _ in steps])
            end = torch.cat([b for _, b in steps]) == sde.t_end
            floor = 1e-6 if h_min is None else h_min
            assert torch.all((h >= floor * (1 - 1e-9)) | end)
            outs.append((res, float(h[~end].min())))
        assert outs[1][1] < 0.05  # without the floor, shorter steps occur
        assert torch.equal(outs[0][0].samples, outs[2][0].samples)


def test_refilled_slots_same_samples_fuller_batches():
    """GGF through refilled slots (sample()'s default for it): the same samples as fixed batches, bit for bit, and
    the batched calls per sample within 1.2x of the per-sample NFE (the final denoise batched as well)."""
    model = s.ExactScoreModel(s.load_problem("gmm8"), s.VPSDE())
    kw = {"rtol": 0.2}
    res = sample(model, 120, 3, ggf_sample, (2,), batch_size=6, dtype=torch.float64, **kw)
    fixed = sample(model, 120, 3, ggf_sample, (2,), batch_size=6, dtype=torch.float64, refill=False, **kw)
    torch.testing.assert_close(res.samples, fixed.samples, rtol=0, atol=0)
    torch.testing.assert_close(res.nfe_per_sample, fixed.nfe_per_sample, rtol=0, atol=0)
    per = float(res.nfe_per_sample.double().mean())
    assert res.info["calls_per_sample"] <= 1.2 * per, (res.info["calls_per_sample"], per)
    assert fixed.info["total_calls"] * 6 / 120 > res.info["calls_per_sample"]

"""scoresde's SEEDS-1/2/3 (Gonzalez et al. 2023) and ms2 / ms3 (stochastic exponential Adams, SA-Solver-style,
Xue et al. 2023) as diffusers schedulers, for stock diffusers pipelines.

    pipe.scheduler = SEEDS2Scheduler.from_config(pipe.scheduler.config)   # or MS2Scheduler, MS3Scheduler
    images = pipe(num_inference_steps=25, generator=torch.Generator().manual_seed(0)).images

The schedulers read the pipeline's discrete-time DDPM schedule (``beta_schedule`` / ``trained_betas``,
``num_train_timesteps``, ``prediction_type``) exactly as :func:`scoresde.interop.from_diffusers` does
(:class:`~scoresde.sde.DiscreteVPSDE`, timestep = N t - 1), and each ``step`` call advances the very same step code
as the scoresde sampler: :func:`scoresde.samplers.seeds`'s :func:`~scoresde.samplers.exponential.exponential_stages`
(a coroutine that asks for each model evaluation), :func:`scoresde.samplers.ms2` / ``ms3``'s
:func:`~scoresde.samplers.multistep.multistep_update` (one step from the D just evaluated and the history). Given the
same model, starting noise and noise draws, the samples are those of the scoresde sampler.

Multi-stage steps (SEEDS-2: 2 evaluations a step, SEEDS-3: 3) expose their intermediate stage times as extra entries
of ``timesteps``, as diffusers' Heun / KDPM2 schedulers do: ``len(timesteps) = order * num_inference_steps`` (+1 for
the final denoising evaluation), the stage timesteps fractional (the UNet's sinusoidal embedding takes any real
timestep). Between two entries ``step`` returns the stage point as ``prev_sample``; the pipeline evaluates the model
there and hands it back. The multistep schedulers make one evaluation a step (``len(timesteps) =
num_inference_steps`` + 1 with ``denoise``) and keep the D values of the previous steps themselves. The noise of each
stage / step is drawn with the ``generator`` passed to ``step`` (diffusers' ``randn_tensor``), in the order the
scoresde sampler draws it.

Not here: zero-terminal-SNR schedules; DDPM's ``clip_sample`` / thresholding (the scoresde samplers have none; the
key is ignored).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._tensor import as_time, like
from ..parameterization import convert
from ..samplers.common import GRIDS, PREDICTIONS, make_grid
from ..samplers.exponential import TABLEAUX, exponential_stages, stage_times
from ..samplers.multistep import History, check_multistep_options, multistep_update
from ..samplers.seeds import MEASURED_DEFAULTS as SEEDS_DEFAULTS
from ..sde import DiscreteVPSDE
from .diffusers import DiffusersError, import_diffusers, sde_from_scheduler_config

_d = import_diffusers()
from diffusers.configuration_utils import ConfigMixin, register_to_config  # noqa: E402
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin  # noqa: E402
from diffusers.utils import BaseOutput  # noqa: E402
from diffusers.utils.torch_utils import randn_tensor  # noqa: E402

__all__ = ["SEEDSScheduler", "SEEDS1Scheduler", "SEEDS2Scheduler", "SEEDS3Scheduler", "SEEDSSchedulerOutput",
           "MultistepSDEScheduler", "MS2Scheduler", "MS3Scheduler"]


@dataclass
class SEEDSSchedulerOutput(BaseOutput):
    """``prev_sample``: the next state (a stage point between a step's evaluations); ``pred_original_sample``: the
    denoiser D at the evaluation just handed in."""

    prev_sample: Tensor
    pred_original_sample: Tensor | None = None


class _DDPMScheduleScheduler(SchedulerMixin, ConfigMixin):
    """What the scoresde schedulers share: the DDPM schedule read as :class:`~scoresde.sde.DiscreteVPSDE` (Ho et al.
    2020's chain), the identity ``scale_model_input``, the output converted as ``ScoreModel`` does, ``add_noise``."""

    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    #: a subclass fixes the order (SEEDS2Scheduler: 2); None: the config's solver_order
    fixed_order: int | None = None
    order = 1

    def _init_schedule(self, num_train_timesteps: int, beta_start: float, beta_end: float, beta_schedule: str,
                       trained_betas: list[float] | None, prediction_type: str, t_end: float | None) -> None:
        cfg = {"num_train_timesteps": num_train_timesteps, "beta_start": beta_start, "beta_end": beta_end,
               "beta_schedule": beta_schedule, "trained_betas": trained_betas, "prediction_type": prediction_type}
        try:
            sde, prediction, _ = sde_from_scheduler_config(cfg, t_end)
        except DiffusersError as e:
            raise ValueError(str(e)) from None
        assert isinstance(sde, DiscreteVPSDE)
        self.sde, self.prediction = sde, prediction
        self.alphas_cumprod = sde.alphas_cumprod.float()
        self.init_noise_sigma = 1.0  # the VP prior N(0, I), as scoresde's sampler starts
        self.num_inference_steps: int | None = None
        self.timesteps = torch.arange(num_train_timesteps - 1, -1, -1, dtype=torch.float32)
        self._generator = None

    def _record_order(self, solver_order: int | None, k: int) -> None:
        if solver_order != k:
            # why: record the order in force; out of _use_default_values, or from_config would drop it again
            defaults = [v for v in self.config.get("_use_default_values", []) if v != "solver_order"]
            self.register_to_config(solver_order=k, _use_default_values=defaults)

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def scale_model_input(self, sample: Tensor, timestep: float | Tensor | None = None) -> Tensor:
        """The identity: the UNet sees the VP state itself."""
        return sample

    def _draw(self, like_x: Tensor):
        def draw(sigma_from: Tensor, sigma_to: Tensor) -> Tensor:
            return randn_tensor(like_x.shape, generator=self._generator, device=like_x.device, dtype=like_x.dtype)

        return draw

    @staticmethod
    def _mean_output(model_output: Tensor, sample: Tensor) -> Tensor:
        if model_output.shape[1] == 2 * sample.shape[1]:  # a learned-variance model: keep the mean prediction
            return model_output[:, :sample.shape[1]]
        return model_output

    def _convert(self, model_output: Tensor, x: Tensor, t: Tensor, kind: str) -> Tensor:
        # as ScoreModel.output: the raw prediction at (x, t) converted with the SDE's float64 (alpha_t, sigma_t)
        alpha, sigma = self.sde.marginal(t)
        return convert(model_output.to(x.dtype), x, like(alpha, x), like(sigma, x), self.prediction, kind)

    def add_noise(self, original_samples: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """x_t = sqrt(abar) x_0 + sqrt(1 - abar) noise at the (integer or fractional) timesteps."""
        ts = torch.as_tensor(timesteps, device=original_samples.device).to(torch.float64).reshape(-1)
        t = (ts + 1) / self.sde.N
        alpha, sigma = self.sde.marginal(t.expand(original_samples.shape[0]) if t.numel() == 1 else t)
        return like(alpha, original_samples) * original_samples + like(sigma, original_samples) * noise


class SEEDSScheduler(_DDPMScheduleScheduler):
    """SEEDS-k (Gonzalez et al. 2023, Alg. 1-3; ``solver_order`` k = 1, 2, 3) on a DDPM schedule, diffusers API.

    Config: the DDPM schedule keys (``num_train_timesteps``, ``beta_start``, ``beta_end``, ``beta_schedule``,
    ``trained_betas``, ``prediction_type``) and the sampler's options as in ``scoresde sample --sampler seedsK``:
    ``eta`` (1: SDE .. 0: ODE = ETD-ERK-k), ``grid`` (logsnr / time / quadratic / edm; unset, both take the
    sampler's measured defaults: SEEDS-1 log-SNR and eta 1, SEEDS-2/3 quadratic and eta 0.5), ``solver_form``
    (data / noise), ``s_noise``, ``t_end`` (default 1/N: timestep 0) and ``denoise`` (a final D(x, t_end)
    evaluation, as DDPM's last step returns its x_0 estimate; default on).
    """

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02,
                 beta_schedule: str = "linear", trained_betas: list[float] | None = None,
                 prediction_type: str = "epsilon", solver_order: int | None = None, eta: float | None = None,
                 grid: str | None = None, solver_form: str = "data", s_noise: float = 1.0, t_end: float | None = None,
                 denoise: bool = True):
        k = self.fixed_order or (2 if solver_order is None else int(solver_order))
        if k not in (1, 2, 3):
            raise ValueError(f"solver_order must be 1, 2 or 3, got {solver_order}")
        self._record_order(solver_order, k)
        # unset eta / grid: the order's measured defaults, as `scoresde sample --sampler seedsK` (seeds.MEASURED_DEFAULTS:
        # SEEDS-1 log-SNR, eta 1; SEEDS-2/3 quadratic, eta 0.5). Recorded in the config, left in _use_default_values
        # so that from_config into another order takes that order's defaults.
        defaults = {"eta": 1.0, "grid": "logsnr", **SEEDS_DEFAULTS[k]}
        eta = defaults["eta"] if eta is None else eta
        grid = defaults["grid"] if grid is None else grid
        self.register_to_config(eta=eta, grid=grid)
        if not 0 <= eta <= 1:
            raise ValueError(f"eta must lie in [0, 1], got {eta}")
        if grid not in GRIDS:
            raise ValueError(f"grid must be one of {', '.join(GRIDS)}, got {grid!r}")
        if solver_form not in PREDICTIONS:
            raise ValueError(f"solver_form must be 'data' or 'noise', got {solver_form!r}")
        self._init_schedule(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, prediction_type,
                            t_end)
        self.tableau = TABLEAUX[f"exp{k}"]
        self.order = k
        self._plan: list[tuple[int, int]] = []
        self._grid: Tensor | None = None
        self._reset()

    def _reset(self) -> None:
        self._index = 0
        self._coroutine = None
        self._pending = None
        self._generator = None

    @property
    def step_index(self) -> int | None:
        """The evaluation the next ``step`` call consumes (None before ``set_timesteps``)."""
        return self._index if self._plan else None

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """``num_inference_steps`` SEEDS steps on the config's grid from T to t_end; ``timesteps`` lists every model
        evaluation (k per step, + 1 with ``denoise``), as the UNet's (fractional) timestep N t - 1."""
        if int(num_inference_steps) < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        steps = int(num_inference_steps)
        grid = make_grid(self.sde, steps, self.config.grid, self.sde.t_end)
        plan, times = [], []
        for i in range(steps):
            for k, t in enumerate(stage_times(self.sde, grid[i], grid[i + 1], self.tableau)):
                plan.append((i, k))
                times.append(t)
        if self.config.denoise and float(self.sde.sigma(grid[-1])) > 0:
            plan.append((steps, 0))
            times.append(grid[-1])
        self._grid, self._plan = grid, plan
        self.num_inference_steps = steps
        self.timesteps = self.sde.timestep(torch.stack([torch.as_tensor(t) for t in times])).to(torch.float32)
        if device is not None:
            self.timesteps = self.timesteps.to(device)
        self._reset()

    def step(self, model_output: Tensor, timestep: float | Tensor, sample: Tensor,
             generator: torch.Generator | None = None, return_dict: bool = True) -> SEEDSSchedulerOutput | tuple:
        """Hand in the model's output at the current evaluation (``timesteps[step_index]``) and get the next state:
        the next stage point inside a step, the step's end x_t after its last stage, D(x, t_end) after the final
        denoising evaluation. ``timestep`` is not read: the scheduler keeps its own place, as diffusers' Heun does."""
        if not self._plan:
            raise ValueError("call set_timesteps(num_inference_steps) before step")
        if self._index >= len(self._plan):
            raise ValueError(f"step called {self._index + 1} times; the schedule has {len(self._plan)} evaluations "
                             "(call set_timesteps again to restart)")
        self._generator = generator
        model_output = self._mean_output(model_output, sample)
        i, _ = self._plan[self._index]
        grid = self._grid
        assert grid is not None
        steps = self.num_inference_steps
        if i == steps:  # the final denoising evaluation
            t = as_time(grid[-1], sample)
            D = self._convert(model_output, sample, t, "data")
            self._index += 1
            return SEEDSSchedulerOutput(prev_sample=D, pred_original_sample=D) if return_dict else (D,)
        if self._coroutine is None:
            self._coroutine = exponential_stages(
                self.sde, sample, as_time(grid[i], sample), as_time(grid[i + 1], sample), self.tableau,
                eta=self.config.eta, prediction=self.config.solver_form, draw=self._draw(sample),
                s_noise=self.config.s_noise)
            self._pending = next(self._coroutine)
        _, t_c, kind = self._pending
        value = self._convert(model_output, sample, t_c, kind)
        D = value if kind == "data" else self._convert(model_output, sample, t_c, "data")
        try:
            self._pending = self._coroutine.send(value)
            out = self._pending[0]
        except StopIteration as done:
            out = done.value[0]
            self._coroutine, self._pending = None, None
        self._index += 1
        return SEEDSSchedulerOutput(prev_sample=out, pred_original_sample=D) if return_dict else (out,)


def _fixed(k: int) -> type[SEEDSScheduler]:
    cls = type(f"SEEDS{k}Scheduler", (SEEDSScheduler,), {"fixed_order": k, "order": k, "__module__": __name__,
                                                        "__doc__": f"SEEDS-{k} (Gonzalez et al. 2023) as a diffusers "
                                                                   f"scheduler: {k} model evaluation(s) a step."})
    return cls


SEEDS1Scheduler = _fixed(1)
SEEDS2Scheduler = _fixed(2)
SEEDS3Scheduler = _fixed(3)


class MultistepSDEScheduler(_DDPMScheduleScheduler):
    """ms2 / ms3 (stochastic exponential Adams-Bashforth in log-SNR, SA-Solver-style predictor, Xue et al. 2023;
    DPM-Solver++(2M) / (3M) at eta = 0, Lu et al. 2022b) on a DDPM schedule, diffusers API: 1 evaluation a step.

    Config: the DDPM schedule keys (as :class:`SEEDSScheduler`), ``solver_order`` (2 | 3; fixed by the subclasses) and
    the sampler's options as in ``scoresde sample --sampler ms2``: ``eta`` (1: the SDE .. 0: the ODE), ``grid``
    (logsnr / time / quadratic / edm), ``ms_variant`` (ms2's first-difference weight: "phi1", the default, or
    "taylor"; ms3: "taylor" only), ``s_noise``, ``t_end`` (default 1/N: timestep 0) and ``denoise`` (a final
    D(x, t_end) evaluation, default on).
    """

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02,
                 beta_schedule: str = "linear", trained_betas: list[float] | None = None,
                 prediction_type: str = "epsilon", solver_order: int | None = None, eta: float = 1.0,
                 grid: str = "logsnr", ms_variant: str | None = None, s_noise: float = 1.0,
                 t_end: float | None = None, denoise: bool = True):
        k = self.fixed_order or (2 if solver_order is None else int(solver_order))
        if k not in (2, 3):
            raise ValueError(f"solver_order must be 2 or 3, got {solver_order}")
        self._record_order(solver_order, k)
        self.variant = check_multistep_options(k, eta, ms_variant, s_noise)
        if grid not in GRIDS:
            raise ValueError(f"grid must be one of {', '.join(GRIDS)}, got {grid!r}")
        self._init_schedule(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, prediction_type,
                            t_end)
        self.solver_order = k
        self._grid: Tensor | None = None
        self._reset()

    def _reset(self) -> None:
        self._index: int | None = None
        self._history: History = []
        self._generator = None

    @property
    def step_index(self) -> int | None:
        """The evaluation the next ``step`` call consumes (None before ``set_timesteps``)."""
        return self._index

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """``num_inference_steps`` steps on the config's grid from T to t_end; ``timesteps`` lists each step's start
        (+ t_end with ``denoise``) as the UNet's (fractional) timestep N t - 1."""
        if int(num_inference_steps) < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        steps = int(num_inference_steps)
        grid = make_grid(self.sde, steps, self.config.grid, self.sde.t_end)
        times = grid[:-1]
        if self.config.denoise and float(self.sde.sigma(grid[-1])) > 0:
            times = grid
        self._grid = grid
        self.num_inference_steps = steps
        self.timesteps = self.sde.timestep(times).to(torch.float32)
        if device is not None:
            self.timesteps = self.timesteps.to(device)
        self._reset()
        self._index = 0

    def step(self, model_output: Tensor, timestep: float | Tensor, sample: Tensor,
             generator: torch.Generator | None = None, return_dict: bool = True) -> SEEDSSchedulerOutput | tuple:
        """Hand in the model's output at the current step's start (``timesteps[step_index]``) and get the step's end
        x_t (:func:`~scoresde.samplers.multistep.multistep_update`), or D(x, t_end) after the final denoising
        evaluation. ``timestep`` is not read: the scheduler keeps its own place."""
        if self._index is None or self._grid is None:
            raise ValueError("call set_timesteps(num_inference_steps) before step")
        if self._index >= len(self.timesteps):
            raise ValueError(f"step called {self._index + 1} times; the schedule has {len(self.timesteps)} "
                             "evaluations (call set_timesteps again to restart)")
        self._generator = generator
        model_output = self._mean_output(model_output, sample)
        i, grid = self._index, self._grid
        D = self._convert(model_output, sample, as_time(grid[i], sample), "data")
        if i == self.num_inference_steps:  # the final denoising evaluation
            out = D
        else:
            out, self._history = multistep_update(
                self.sde, sample, D, as_time(grid[i], sample), as_time(grid[i + 1], sample), self._history,
                order=self.solver_order, eta=self.config.eta, variant=self.variant, s_noise=self.config.s_noise,
                draw=self._draw(sample))
        self._index += 1
        return SEEDSSchedulerOutput(prev_sample=out, pred_original_sample=D) if return_dict else (out,)


def _fixed_ms(k: int) -> type[MultistepSDEScheduler]:
    return type(f"MS{k}Scheduler", (MultistepSDEScheduler,), {
        "fixed_order": k, "__module__": __name__,
        "__doc__": f"ms{k} (stochastic exponential Adams, Xue et al. 2023; DPM-Solver++({k}M) at eta = 0) as a "
                   "diffusers scheduler: 1 model evaluation a step."})


MS2Scheduler = _fixed_ms(2)
MS3Scheduler = _fixed_ms(3)

"""The sampler registry: each sampler's name, function, options, defaults and ranges, written once.

The command line (its choices and ``--help``), the configs' ``sampling`` section and the trainer all
read this module; adding a sampler is one function plus one :class:`SamplerSpec` entry below.
Defaults are read from the sampler function's signature, so library and command line agree.
Errors are ``ValueError`` with one line naming the option and the accepted values.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..brownian import NOISE_MODES
from . import pc
from .adaptive import ERROR_NORMS, TOLERANCES, ggf_sample
from .adaptive_exponential import adaptive_exponential
from .base import SampleResult
from .common import GRIDS
from .edm import edm_heun
from .exponential import ddim, dpmpp_2m, etd_erk_1, etd_erk_2, etd_erk_3
from .multistep import ms2, ms3
from .ode import ODE_METHODS, ode_sample
from .seeds import seeds_1, seeds_2, seeds_3

__all__ = ["Option", "OPTIONS", "SamplerSpec", "SAMPLERS", "PREDICTORS", "CORRECTORS", "DEFAULT_SAMPLER",
           "resolve", "describe", "option_default", "check_option", "grid_samplers"]

#: PC predictors and correctors by name ("none": skip that half of the step)
PREDICTORS: dict[str, Callable | None] = {"euler_maruyama": pc.euler_maruyama,
                                          "reverse_diffusion": pc.reverse_diffusion,
                                          "ancestral_sampling": pc.ancestral_sampling, "none": None}
CORRECTORS: dict[str, Callable | None] = {"langevin": pc.langevin, "ald": pc.annealed_langevin, "none": None}

#: the most steps any fixed-step sampler may take (beyond it, a typo rather than a plan)
MAX_STEPS = 10**6


@dataclass(frozen=True)
class Option:
    """A sampler option as the command line and the configs name it, with its type and accepted values."""

    name: str
    kind: type
    help: str
    choices: tuple[str, ...] | None = None
    low: float | None = None          # smallest accepted value
    high: float | None = None         # largest accepted value
    low_open: bool = False            # the value must be strictly above ``low``

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """The value, validated (bools are not numbers, ints are floats), else ValueError naming the option."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be true or false, got {value!r}")
            return value
        if self.kind in (int, float):
            ok = isinstance(value, int) or (self.kind is float and isinstance(value, float))
            if isinstance(value, bool) or not ok:
                raise ValueError(f"{self.name} must be a{'n integer' if self.kind is int else ' number'}, got {value!r}")
            value = self.kind(value)
            if self.kind is float and not math.isfinite(value):
                raise ValueError(f"{self.name} must be finite, got {value!r}")
            below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
            above = self.high is not None and value > self.high
            if below or above:
                raise ValueError(f"{self.name} must lie in {self.range_text()}, got {value!r}")
            return value
        if not isinstance(value, str) or (self.choices is not None and value not in self.choices):
            raise ValueError(f"{self.name} must be one of {', '.join(self.choices or ())}, got {value!r}")
        return value

    def range_text(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open or self.low is None else '['}{lo}, {hi}{']' if self.high is not None else ')'}"


#: every sampler option, by its command-line / config name
OPTIONS: dict[str, Option] = {o.name: o for o in (
    Option("steps", int, "number of steps", low=1, high=MAX_STEPS),
    Option("predictor", str, "PC predictor", choices=tuple(PREDICTORS)),
    Option("corrector", str, "PC corrector", choices=tuple(CORRECTORS)),
    Option("snr", float, "Langevin corrector signal-to-noise ratio (default 0.16 VE, 0.01 VP / sub-VP)", low=0,
           low_open=True),
    Option("n_corrector", int, "corrector steps per predictor step", low=0, high=MAX_STEPS),
    Option("final_mean", bool, "return the last predictor step's noise-free mean (score_sde_pytorch's noise "
                               "removal, no NFE)"),
    Option("denoise", bool, "a final Tweedie step x <- D(x, t_end), one NFE"),
    Option("method", str, "ODE solver", choices=tuple(ODE_METHODS)),
    Option("rtol", float, "relative tolerance", low=0, low_open=True),
    Option("atol", float, "absolute tolerance", low=0, low_open=True),
    Option("grid", str, "time grid", choices=GRIDS),
    Option("eta", float, "noise level, from 0 (probability-flow ODE) to 1 (reverse SDE)", low=0, high=1),
    Option("form", str, "data- or noise-prediction form", choices=("data", "noise")),
    Option("s_churn", float, "EDM's S_churn (0: deterministic Heun)", low=0),
    Option("noise_mode", str, "a rejected step is retried on the Brownian bridge of the drawn increment "
                              "(bridge: unbiased) or with fresh noise (the paper; biased)", choices=NOISE_MODES),
    Option("norm", str, "error norm", choices=ERROR_NORMS),
    Option("h_max", float, "largest step in log-SNR (1: a step spans at most a factor e in noise level)", low=0,
           low_open=True),
    Option("tolerance", str, "what rtol is relative to: the state's magnitude (mixed: GGF's rule, data units) or the "
                             "noise level sigma_t (noise)", choices=TOLERANCES),
)}


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: its function, the options it takes and how they become keyword arguments."""

    name: str
    fn: Callable[..., SampleResult]
    summary: str                                   # one line: what it is, the paper
    options: tuple[str, ...]                       # names in OPTIONS
    nfe: str                                       # how its NFE adds up
    fixed: Mapping[str, Any] = field(default_factory=dict)      # keyword arguments it always gets
    kwarg: Mapping[str, str] = field(default_factory=dict)      # option name -> function argument, where they differ
    check: Callable[[dict[str, Any]], None] | None = None      # cross-option rules (given options only)
    steps_on_grid: bool = True     # walks a given time grid step by step (inpainting / colorization need it)

    def argument(self, option: str) -> str:
        return self.kwarg.get(option, option)


def _check_ode(given: dict[str, Any]) -> None:
    method = given.get("method", option_default("ode", "method"))
    if method in _ADAPTIVE_ODE and "steps" in given:
        raise ValueError("steps applies to the fixed-step ODE methods; dopri5 takes rtol/atol")
    if method not in _ADAPTIVE_ODE and ("rtol" in given or "atol" in given):
        raise ValueError(f"rtol/atol apply to dopri5, not method {method} (use steps)")


_ADAPTIVE_ODE = ("dopri5",)
_FAST = ("steps", "grid")

# Grid and eta defaults of the fixed-step samplers (read from the functions' signatures, the per-order ones from
# seeds.MEASURED_DEFAULTS / exponential.MEASURED_DEFAULTS) were chosen by `python benchmarks/grids.py`
# (benchmarks/results/grids.md: NFE to the arena's target on gmm8, gmm64, mnist-emp, 3 seeds; a default changed
# where the best (grid, eta) beat it by more than 20 %, SDE samplers kept eta > 0, ODE samplers eta 0):
#   seeds1 logsnr, eta 1 (kept: eta 0.5 measured 30 % better, but eta 1 is the ancestral step inpainting/TDS use)
#   seeds2, seeds3 quadratic, eta 0.5 (were logsnr, eta 1)    etd1, ddim (eta 0), edm: quadratic (were logsnr / edm)
#   etd2, etd3, dpmpp2m, ms2, ms3: logsnr (kept; ms2/ms3 at eta 1)


def _seeds(k: int) -> SamplerSpec:
    return SamplerSpec(f"seeds{k}", (seeds_1, seeds_2, seeds_3)[k - 1],
                       f"SEEDS-{k} exponential SDE solver (Gonzalez et al. 2023)",
                       _FAST + ("eta", "form", "denoise"), f"{k} per step", kwarg={"form": "prediction"})


def _etd(k: int) -> SamplerSpec:
    return SamplerSpec(f"etd{k}", (etd_erk_1, etd_erk_2, etd_erk_3)[k - 1],
                       f"ETD-ERK-{k} exponential ODE solver = DPM-Solver++ singlestep (Lu et al. 2022)",
                       _FAST + ("form", "denoise"), f"{k} per step", kwarg={"form": "prediction"})


#: every sampler, by name
SAMPLERS: dict[str, SamplerSpec] = {s.name: s for s in (
    SamplerSpec("pc", pc.pc_sample, "predictor-corrector (Song et al. 2021, Alg. 2-4)",
                ("steps", "predictor", "corrector", "snr", "n_corrector", "final_mean", "denoise"),
                "(1 + n_corrector) per step"),
    SamplerSpec("ode", ode_sample, "probability-flow ODE on torchdiffeq (Song et al. 2021, eq. 13)",
                ("method", "rtol", "atol", "steps", "denoise"), "adaptive (dopri5) or per stage", check=_check_ode,
                steps_on_grid=False),
    _seeds(1), _seeds(2), _seeds(3), _etd(1), _etd(2), _etd(3),
    SamplerSpec("dpmpp2m", dpmpp_2m, "DPM-Solver++(2M) multistep (Lu et al. 2022b, Alg. 2)", _FAST + ("denoise",),
                "1 per step"),
    *(SamplerSpec(f"ms{k}", fn, f"multistep stochastic exponential solver of order {k}, 1 NFE a step (stochastic "
                  f"Adams in log-SNR, cf. SA-Solver, Xue et al. 2023; DPM-Solver++({k}M) at eta 0)",
                  _FAST + ("eta", "denoise"), "1 per step") for k, fn in ((2, ms2), (3, ms3))),
    SamplerSpec("ddim", ddim, "DDIM(eta) (Song, Meng & Ermon 2021, eq. 12)", _FAST + ("eta", "denoise"), "1 per step"),
    SamplerSpec("edm", edm_heun, "EDM Heun with churn (Karras et al. 2022, Alg. 2)",
                _FAST + ("s_churn", "denoise"), "2 per step (1 for a step to sigma 0)", kwarg={"s_churn": "S_churn"}),
    SamplerSpec("ggf", ggf_sample, "Gotta Go Fast adaptive SDE solver (Jolicoeur-Martineau et al. 2021)",
                ("rtol", "atol", "noise_mode", "norm", "tolerance", "denoise"),
                "2 per attempt, rejections included, per sample", steps_on_grid=False),
    SamplerSpec("adaptive", adaptive_exponential, "adaptive exponential SDE solver: SEEDS-1/2 embedded pair, "
                "noise-relative tolerance, Brownian-bridge retries (eta 0: an adaptive ODE solver)",
                ("rtol", "atol", "eta", "h_max", "noise_mode", "norm", "denoise"),
                "2 per accepted step, 1 per rejection, per sample", steps_on_grid=False),
)}

DEFAULT_SAMPLER = "pc"


def grid_samplers() -> tuple[str, ...]:
    """The samplers that walk a given time grid step by step (``SamplerSpec.steps_on_grid``)."""
    return tuple(name for name, spec in SAMPLERS.items() if spec.steps_on_grid)


def option_default(sampler: str, option: str) -> Any:
    """The default of ``option`` for ``sampler``, read from the sampler function's signature (names for PC parts)."""
    spec = SAMPLERS[sampler]
    p = inspect.signature(spec.fn).parameters.get(spec.argument(option))
    if p is None or p.default is inspect.Parameter.empty:
        return None
    if option in ("predictor", "corrector"):
        names = PREDICTORS if option == "predictor" else CORRECTORS
        return next((k for k, v in names.items() if v is p.default), p.default)
    return p.default


def check_option(name: str, value: Any) -> Any:
    """Validate one option value by its name (ValueError naming it otherwise)."""
    if name not in OPTIONS:
        raise ValueError(f"unknown sampler option {name!r}; expected one of {', '.join(OPTIONS)}")
    return OPTIONS[name].check(value)


def resolve(sampler: str, options: Mapping[str, Any] | None = None) -> tuple[Callable[..., SampleResult], dict]:
    """(function, keyword arguments) for ``sampler`` with ``options`` (CLI / config names; None values: defaults).

    An option the sampler does not take, an unknown option or a value out of range is a ValueError.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")
    spec = SAMPLERS[sampler]
    given = {k: check_option(k, v) for k, v in (options or {}).items() if v is not None}
    wrong = [k for k in given if k not in spec.options]
    if wrong:
        raise ValueError(f"option {wrong[0]} does not apply to sampler {sampler} "
                         f"(it takes {', '.join(spec.options)})")
    if spec.check is not None:
        spec.check(given)
    kwargs = dict(spec.fixed)
    for k, v in given.items():
        if k == "predictor":
            v = PREDICTORS[v]
        elif k == "corrector":
            v = CORRECTORS[v]
        kwargs[spec.argument(k)] = v
    return spec.fn, kwargs


def describe(sampler: str, options: Mapping[str, Any] | None = None) -> str:
    """A short human description of a sampler and its effective settings (given options over defaults)."""
    spec = SAMPLERS[sampler]
    given = {k: v for k, v in (options or {}).items() if v is not None}
    eff = {k: given.get(k, option_default(sampler, k)) for k in spec.options}
    if sampler == "ode":
        if eff["method"] in _ADAPTIVE_ODE:
            return f"ode {eff['method']} rtol={eff['rtol']:g} atol={eff['atol']:g}"
        return f"ode {eff['method']} {eff['steps']} steps"
    if sampler == "pc":
        return f"pc {eff['predictor']}+{eff['corrector']} {eff['steps']} steps"
    if sampler == "ggf":
        return f"ggf rtol={eff['rtol']:g} {eff['noise_mode']} noise {eff['tolerance']} tolerance"
    if sampler == "adaptive":
        return f"adaptive rtol={eff['rtol']:g} atol={eff['atol']:g} eta={eff['eta']:g} {eff['noise_mode']} noise"
    extra = "".join(f" {k}={eff[k]:g}" for k in ("eta", "s_churn") if k in eff and eff[k] is not None)
    return f"{sampler} {eff['steps']} steps {eff['grid']} grid{extra}"

"""Samplers: every one takes (model, x_T, noise, **options) and returns a SampleResult.

k-diffusion-style entry points ``sample_x(model, x, sigmas, ...)`` over a denoiser D(x, sigma) live
in :mod:`scoresde.samplers.kdiffusion`.
"""
from .adaptive import ggf_sample, sample_ggf
from .base import SampleResult, sample
from .common import GRIDS, make_grid
from .controller import ControllerState, GGFController, PIDController, StepSizeController
from .edm import edm_heun
from .exponential import (
                          TABLEAUX,
                          ExponentialTableau,
                          ddim,
                          dpmpp_2m,
                          etd_erk,
                          etd_erk_1,
                          etd_erk_2,
                          etd_erk_3,
                          exponential_step,
                          exponential_tableau,
)
from .multistep import ms2, ms3, multistep_sample
from .ode import ODE_METHODS, ode_sample, probability_flow
from .pc import (
                          ancestral_sampling,
                          annealed_langevin,
                          default_snr,
                          euler_maruyama,
                          langevin,
                          pc_sample,
                          reverse_diffusion,
)
from .seeds import seeds, seeds_1, seeds_2, seeds_3

__all__ = ["SampleResult", "sample", "pc_sample", "ode_sample", "probability_flow", "ODE_METHODS",
           "euler_maruyama", "reverse_diffusion", "ancestral_sampling", "langevin", "annealed_langevin",
           "etd_erk", "etd_erk_1", "etd_erk_2", "etd_erk_3", "dpmpp_2m", "ddim", "make_grid", "GRIDS",
           "seeds", "seeds_1", "seeds_2", "seeds_3", "edm_heun", "ggf_sample", "sample_ggf", "GGFController",
           "PIDController", "StepSizeController", "ExponentialTableau", "TABLEAUX", "exponential_tableau",
           "exponential_step", "ControllerState", "default_snr", "ms2", "ms3", "multistep_sample"]

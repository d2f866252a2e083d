"""Samplers: every one takes (model, x_T, noise, **options) and returns a SampleResult."""
from .base import SampleResult, sample
from .ode import ODE_METHODS, ode_sample, probability_flow
from .pc import (ancestral_sampling, annealed_langevin, euler_maruyama, langevin, pc_sample,
                 reverse_diffusion)

__all__ = ["SampleResult", "sample", "pc_sample", "ode_sample", "probability_flow", "ODE_METHODS",
           "euler_maruyama", "reverse_diffusion", "ancestral_sampling", "langevin", "annealed_langevin"]

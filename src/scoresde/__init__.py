"""scoresde: score-based generative modelling through stochastic differential equations."""
from .brownian import BrownianPath, NoiseSource, SampleStreams, sample_seed
from .exact import EmpiricalDistribution, ExactScoreModel, Gaussian, GaussianMixture, load_problem
from .likelihood import bits_per_dim, decode, encode, log_likelihood, round_trip
from .parameterization import DenoiserModel, NetworkModel, ScoreModel, convert, to_denoiser
from .sde import SDE, VESDE, VPSDE, DDPMChain, SMLDChain, SubVPSDE

__version__ = "0.1.0"

__all__ = ["SDE", "VESDE", "VPSDE", "SubVPSDE", "SMLDChain", "DDPMChain", "ScoreModel", "NetworkModel",
           "DenoiserModel", "convert", "to_denoiser", "Gaussian", "GaussianMixture", "EmpiricalDistribution",
           "ExactScoreModel", "load_problem", "NoiseSource", "sample_seed", "SampleStreams", "BrownianPath",
           "log_likelihood", "bits_per_dim", "encode", "decode", "round_trip"]

"""Seeds: one derivation (numpy's SeedSequence) for every seeded purpose, and the ids of the random streams.

A run seed S becomes many independent generator seeds, one per purpose (and per sample, repeat,
step...). Every purpose id is declared here, once, so no two purposes share a stream by accident.
"""
from __future__ import annotations

import numpy as np

__all__ = ["derive_seed", "sample_seed", "SAMPLE_NOISE", "BROWNIAN", "HUTCHINSON_PROBES", "DEQUANTISATION",
           "TDS_PARTICLES", "TDS_RESAMPLING", "TRAIN_INIT", "TRAIN_PERMUTATION", "TRAIN_LOSS", "TRAIN_DROPOUT",
           "PEER_NOISE", "PEER_NOISE_ALT"]

# ---- per-sample streams: sample_seed(S, i, stream) ----------------------------------------------------
#: the prior draw x_T and the noise of the fixed-step samplers (NoiseSource)
SAMPLE_NOISE = 0
#: the Brownian path of the adaptive solvers (SampleStreams side stream)
BROWNIAN = 1
#: the twisted diffusion sampler (inpainting): its K particles' noise, and its resampling uniforms
TDS_PARTICLES, TDS_RESAMPLING = 2, 3

# ---- per-run purposes: derive_seed(S, purpose, ...) -------------------------------------------------
#: Hutchinson probes of the likelihood (then per point: sample_seed(probe seed, i))
HUTCHINSON_PROBES = 1
#: uniform dequantisation noise of bits/dim (per repeat)
DEQUANTISATION = 2
#: training: network initialisation, the per-epoch permutation, the loss draws of a step, dropout
TRAIN_INIT, TRAIN_PERMUTATION, TRAIN_LOSS, TRAIN_DROPOUT = 1, 2, 3, 4
#: benchmarks: the noise of peer samplers that draw their own (k-diffusion, diffusers)
PEER_NOISE, PEER_NOISE_ALT = 7, 8


def derive_seed(seed: int, *parts: int) -> int:
    """A 63-bit generator seed for ``parts`` (purpose, index, ...) of a run with seed ``seed``."""
    entropy = [int(seed) & 0xFFFFFFFFFFFFFFFF, *[int(p) for p in parts]]
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return ((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


def sample_seed(seed: int, index: int, stream: int = SAMPLE_NOISE) -> int:
    """The generator seed of sample ``index`` in a run with seed ``seed``, on stream ``stream``.

    Stream 0 (:data:`SAMPLE_NOISE`) is the sample's own; others are independent side streams.
    """
    return derive_seed(seed, index) if stream == SAMPLE_NOISE else derive_seed(seed, index, stream)

"""The sampler arena: scoresde's SDE samplers against k-diffusion and diffusers on exact-score problems.

    python benchmarks/arena.py                        # the full run (about 15-25 min on one CPU thread)
    python benchmarks/arena.py --quick                # a smaller run (a few minutes)
    python benchmarks/arena.py --problems gmm8 gmm64 --samplers em seeds-3 kd-dpmpp_3m_sde
    python -m benchmarks.arena ...                    # the same, from the repository root

Peers (installed into the venv, never project dependencies; torch is left alone):

    pip install --no-deps k-diffusion torchsde trampoline   # k-diffusion's sampling.py + BrownianTree
    pip install diffusers    # pure-python deps only (huggingface_hub, safetensors, regex, requests, ...)
                             # diffusers does not depend on torch; --dry-run first shows nothing touches it

Modules: :mod:`.problems` (the problems, their judges and targets: one entry each in ``PROBLEMS``),
:mod:`.contestants` (scoresde's samplers, one registry entry each in ``SCORESDE``, and the roster),
:mod:`.peers` (k-diffusion / diffusers loading and their samplers, one entry each), :mod:`.sweep`
(runs, sweeps, side studies), :mod:`.report` (tables, plots, verdicts, notes), :mod:`.base` (the counting
model, the contestant and result records), ``__main__`` (the command line).

Every sampler sees the same exact model through the same adapters, starts from the same x_T (the first
draw of each sample's seeded stream, :class:`scoresde.brownian.NoiseSource`) and every model call goes
through one wrapper (:class:`.base.Counted`): a ScoreModel that supplies the inner model's predictions,
so ScoreModel's own ``nfe`` counts the calls while the wrapper counts rows and times them. scoresde's
samplers call ``model.score/denoised/eps``; the peers' adapters are described in :mod:`.peers`. Peers
that draw their own noise are seeded from ``scoresde.seeding``'s PEER_NOISE (k-diffusion) and
PEER_NOISE_ALT (diffusers) streams.

Judge (design.md section 7). Every sampler stops at its last noisy level sigma_end (scoresde / k-diffusion:
sigma~(t_end = 1e-3) = 0.0105; diffusers: its timestep 0, sigma~ = 0.0100), without the final denoise, and
is judged against the closed-form marginal there: the mixture with stds sqrt(s_k^2 + sigma_end^2) (x in VE
space). Mixtures: the mode-weight TV against tv_noise (the Monte-Carlo floor of an exact sampler with as
many samples) and the pooled within-mode spread ratio (1 = right). Empirical MNIST digits
(EmpiricalDistribution of 1000 training digits, 100 per class): the class histogram of the nearest
training point (TV vs uniform, with its floor), the number of distinct points hit (vs its expectation
under uniform hitting) and the spread ratio - NOT the distance to the nearest training point after a
final denoise, which every sampler passes. The trained MNIST U-Net (runs/mnist, if present): one counted
final denoise (+1 NFE for every sampler), then the offline digit judge (Frechet distance in the judge
CNN's features, class TV), relative to Euler-Maruyama at 200 steps.

Sweeps are their settings lists (no time limit: the same on any machine) and stop once the target holds at
two consecutive settings. Writes benchmarks/results/arena.md (tables, summary, verdicts, notes) and
benchmarks/results/arena_<problem>.png; a problem that cannot run here keeps its previous section, marked.
"""

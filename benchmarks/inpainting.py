"""Inpainting bias on an exact mixture: replacement vs RePaint vs DPS vs exact guidance vs the closed form.

    python benchmarks/inpainting.py            # about 10 minutes on one CPU thread
    python benchmarks/inpainting.py --extra    # appends: more steps / another base sampler (a few minutes)

Two Gaussian modes at (-1, -1) and (1, 1) (std 0.3, weights 1/2); x[0] is known, x[1] is sampled. The
conditional of x[1] is a mixture whose heavy-mode weight is known in closed form; each method's share of
samples in that mode is compared with it (3 seeds x 2000 samples, SEEDS-1 on 100 VP log-SNR steps). The
error is given in standard errors of the pooled 6000 samples, and the spread across seeds.
Writes benchmarks/results/inpainting.md.
"""
from __future__ import annotations

import math
import os
import platform
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

import scoresde as s
from scoresde.inpainting import inpaint
from scoresde.samplers import sample

ROOT = Path(__file__).resolve().parent.parent
MIX = s.GaussianMixture([0.5, 0.5], [[-1.0, -1.0], [1.0, 1.0]], [0.3, 0.3])
SETTINGS = [("replacement", {}), ("repaint", {"jump": 1, "resample": 5}), ("repaint", {"jump": 1, "resample": 20}),
            ("dps", {"zeta": 0.1}), ("dps", {"zeta": 0.3}), ("dps", {"zeta": 1.0}), ("exact", {})]
SEEDS, N = (0, 1, 2), 2000
#: the second table: does the bias shrink with the sampler's own error (more steps, second order)?
EXTRA = [("exact", {"steps": 400}), ("exact", {"base": "seeds2", "steps": 100}), ("dps", {"zeta": 0.3, "steps": 400}),
         ("replacement", {"steps": 400})]


def _setting(method: str, kw: dict) -> str:
    name = method
    if method == "repaint":
        name = f"repaint j{kw['jump']} r{kw['resample']}"
    if method == "dps":
        name = f"dps zeta' {kw['zeta']:g}"
    if "base" in kw or "steps" in kw:
        name += f" ({kw.get('base', 'seeds1')}, {kw.get('steps', 100)} steps)"
    return name


def main() -> int:
    import sys

    extra = "--extra" in sys.argv[1:]
    torch.set_num_threads(1)
    sde = s.VPSDE()
    model = s.ExactScoreModel(MIX, sde)
    rows = ["| known x[0] | true heavy-mode weight | method | NFE | sampled weight (pooled) | per seed | error (s.e.) "
            "| heavy-mode spread / 0.3 |", "|---:|---:|---|---:|---:|---|---:|---:|"]
    for ya in (0.1, 0.3):
        known, mask = torch.tensor([ya, 0.0], dtype=torch.float64), torch.tensor([1.0, 0.0])
        truth = float(MIX.condition(known, mask).weights[1])
        se = math.sqrt(truth * (1 - truth) / (N * len(SEEDS)))
        for method, kw in EXTRA if extra else SETTINGS:
            outs, nfe = [], 0
            run = {"base": "seeds1", "steps": 100, **kw}
            for seed in SEEDS:
                res = sample(model, N, seed, inpaint, (2,), dtype=torch.float64, known=known, mask=mask,
                             method=method, **run)
                outs.append(res.samples[:, 1])
                nfe = res.nfe
            shares = [float((o > 0).double().mean()) for o in outs]
            x1 = torch.cat(outs)
            share = float((x1 > 0).double().mean())
            spread = float(x1[x1 > 0].std()) / 0.3
            row = (f"| {ya} | {truth:.4f} | {_setting(method, kw)} | {nfe} | {share:.4f} | "
                   f"{' / '.join(f'{v:.3f}' for v in shares)} | {share - truth:+.4f} ({abs(share - truth) / se:.1f}) "
                   f"| {spread:.3f} |")
            print(row, flush=True)
            rows.append(row)
    text = ("# Inpainting bias on an exact mixture\n\n" + __doc__.split("\n\n", 2)[2].split("Writes")[0].strip()
            + f"\n\nMachine: {platform.machine()}, torch {torch.__version__}, one thread.\n\n" + "\n".join(rows)
            + "\n\nReplacement ignores the known coordinate at high noise, so its fills follow the unconditional"
            " weights far more than the conditional's; resampling moves them towards the truth, slowly (each"
            " level must mix across modes that are already separated at low noise). DPS approximates"
            " p_t(y | x_t) by a point mass at D(x_t): it pulls towards the heavy mode but not far enough, and a"
            " large zeta' inflates the spread. Exact guidance (the closed-form p_t(y | x_t) of a mixture) is"
            " the conditional score itself, and lands within Monte-Carlo error.\n")
    out = ROOT / "benchmarks" / "results" / "inpainting.md"
    if extra:
        text = (out.read_text().split("\n## More steps")[0].rstrip() + "\n\n## More steps, another base sampler\n\n"
                "`python benchmarks/inpainting.py --extra`: the same problem and seeds.\n\n" + "\n".join(rows) + "\n")
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

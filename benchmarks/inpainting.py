"""Inpainting bias on an exact mixture: replacement vs RePaint vs DPS vs exact guidance vs the closed form.

    python benchmarks/inpainting.py            # about 10 minutes on one CPU thread
    python benchmarks/inpainting.py --extra    # its section: more steps / another base sampler (a few minutes)
    python benchmarks/inpainting.py --tds      # its section: the twisted diffusion sampler vs replacement (~4 min)

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
#: the third table: TDS (Wu et al. 2023) with K particles per row, observation noise sigma_y = 0.05, beside replacement
TDS = [("replacement", {}), ("tds", {"particles": 1}), ("tds", {"particles": 8}), ("tds", {"particles": 16}),
       ("tds", {"particles": 32})]
SIGMA_Y = 0.05


def _setting(method: str, kw: dict) -> str:
    name = method
    if method == "repaint":
        name = f"repaint j{kw['jump']} r{kw['resample']}"
    if method == "dps":
        name = f"dps zeta' {kw['zeta']:g}"
    if method == "tds":
        name = f"tds K={kw['particles']}" + (" (the guided proposal alone)" if kw["particles"] == 1 else "")
    if "base" in kw or "steps" in kw:
        name += f" ({kw.get('base', 'seeds1')}, {kw.get('steps', 100)} steps)"
    return name


def _row(ya: float, truth: float, method: str, kw: dict, outs: list, nfe: int, noiseless: float | None = None) -> str:
    n = sum(len(o) for o in outs)
    shares = [float((o > 0).double().mean()) for o in outs]
    x1 = torch.cat(outs)
    share = float((x1 > 0).double().mean())
    spread = float(x1[x1 > 0].std()) / 0.3

    def err(t: float) -> str:
        return f"{share - t:+.4f} ({abs(share - t) / math.sqrt(t * (1 - t) / n):.1f})"

    cells = [f"{ya}", f"{truth:.4f}"] + ([] if noiseless is None else [f"{noiseless:.4f}"]) + [
        _setting(method, kw), f"{nfe}", f"{share:.4f}", " / ".join(f"{v:.3f}" for v in shares), err(truth)]
    if noiseless is not None:
        cells.append(err(noiseless))
    return "| " + " | ".join(cells + [f"{spread:.3f}"]) + " |"


def _write(out: Path, title: str | None, body: str) -> None:
    """Replace the section ``## title`` of ``out`` (the head, above every section, when title is None), keep the rest."""
    old = out.read_text() if out.exists() else ""
    parts = old.split("\n## ")
    head, sections = parts[0], {p.split("\n", 1)[0]: p for p in parts[1:]}
    if title is None:
        head = body.rstrip()
    else:
        sections[title] = title + "\n\n" + body.strip()
    out.write_text("\n\n## ".join([head.rstrip()] + [v.rstrip() for v in sections.values()]) + "\n")


def main() -> int:
    import sys

    extra, tds = "--extra" in sys.argv[1:], "--tds" in sys.argv[1:]
    torch.set_num_threads(1)
    sde = s.VPSDE()
    model = s.ExactScoreModel(MIX, sde)
    if tds:
        rows = ["| known x[0] | truth, sigma_y = 0.05 | truth, noiseless | method | NFE | sampled weight (pooled) | "
                "per seed | error vs sigma_y = 0.05 truth (s.e.) | error vs noiseless truth (s.e.) | "
                "heavy-mode spread / 0.3 |", "|---:|---:|---:|---|---:|---:|---|---:|---:|---:|"]
    else:
        rows = ["| known x[0] | true heavy-mode weight | method | NFE | sampled weight (pooled) | per seed | error (s.e.) "
                "| heavy-mode spread / 0.3 |", "|---:|---:|---|---:|---:|---|---:|---:|"]
    for ya in (0.1, 0.3):
        known, mask = torch.tensor([ya, 0.0], dtype=torch.float64), torch.tensor([1.0, 0.0])
        noiseless = float(MIX.condition(known, mask).weights[1])
        truth = float(MIX.condition(known, mask, SIGMA_Y).weights[1]) if tds else noiseless
        for method, kw in TDS if tds else EXTRA if extra else SETTINGS:
            outs, nfe = [], 0
            run = {"base": "seeds1", "steps": 100, **kw}
            if method == "tds":
                run["sigma_y"] = SIGMA_Y
            for seed in SEEDS:
                res = sample(model, N, seed, inpaint, (2,), dtype=torch.float64, known=known, mask=mask,
                             method=method, **run)
                outs.append(res.samples[:, 1])
                nfe = res.nfe
            row = _row(ya, truth, method, kw, outs, nfe, noiseless if tds else None)
            print(row, flush=True)
            rows.append(row)
    out = ROOT / "benchmarks" / "results" / "inpainting.md"
    if tds:
        _write(out, "Twisted diffusion sampler (TDS)", TDS_TEXT + "\n\n" + "\n".join(rows) + "\n\n" + TDS_AFTER)
    elif extra:
        _write(out, "More steps, another base sampler", "`python benchmarks/inpainting.py --extra`: the same problem "
               "and seeds.\n\n" + "\n".join(rows))
    else:
        _write(out, None, "# Inpainting bias on an exact mixture\n\n" + __doc__.split("\n\n", 2)[2].split("Writes")[0]
               .strip() + f"\n\nMachine: {platform.machine()}, torch {torch.__version__}, one thread.\n\n"
               + "\n".join(rows) + "\n\n" + MAIN_AFTER)
    print(f"wrote {out}")
    return 0


MAIN_AFTER = ("Replacement ignores the known coordinate at high noise, so its fills follow the unconditional weights far"
              " more than the conditional's; resampling moves them towards the truth, slowly (each level must mix"
              " across modes that are already separated at low noise). DPS approximates p_t(y | x_t) by a point mass"
              " at D(x_t): it pulls towards the heavy mode but not far enough, and a large zeta' inflates the spread."
              " Exact guidance (the closed-form p_t(y | x_t) of a mixture) is the conditional score itself, and lands"
              " within Monte-Carlo error.")
TDS_TEXT = ("`python benchmarks/inpainting.py --tds` (its own section, so the run stays within minutes: the tables above"
            " are not recomputed): the same problem, seeds (3 x 2000 rows) and grid (SEEDS-1's ancestral step, 100 VP"
            " log-SNR steps). TDS (`--method tds`, `scoresde.twisted`) conditions on a noisy observation y = x[0] +"
            " sigma_y n, sigma_y = 0.05: its target is the conditional given that y, whose heavy-mode weight"
            " pi_k N(y; mu_k0, s_k^2 + sigma_y^2) is the first truth column; the noiseless conditional (sigma_y -> 0,"
            " the target of the other methods, which keep the known value exactly) is the second. NFE counts every"
            " particle: K x 101 model calls per row (each with its gradient).")
TDS_AFTER = ("TDS's only approximation is the finite number of particles (the weights correct the guided proposal"
             " exactly, and the proposal alone, K = 1, is as biased as DPS): the bias shrinks as K grows - at x[0] = 0.1"
             " 13.6 s.e. low at K = 8, 5.7 at K = 16, 1.3 (within Monte-Carlo error) at K = 32, where replacement is 79"
             " s.e. off on the same grid; at x[0] = 0.3 K = 8 already lands within 0.6 s.e. (replacement: 546). Its NFE"
             " is K times the chain's. The noise of the observation moves the truth by 0.005 at x[0] = 0.1: against"
             " the noiseless truth TDS K = 32 reads 2.8 s.e. low. The heavy mode's spread is that of the 100-step"
             " chain conditioned at x[0] = 0.1; its mode mean there is 0.95 (0.995 at 400 steps, measured with K ="
             " 4096 on 4 rows): SEEDS-1's own discretisation, which TDS inherits - it is exact for the chain it runs.")


if __name__ == "__main__":
    raise SystemExit(main())

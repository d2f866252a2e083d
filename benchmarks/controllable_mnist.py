"""Controllable generation demos: class-conditional MNIST, inpainting of held-out digits, colorization of photo patches.

    python benchmarks/controllable_mnist.py --workdir runs/mnist            # ~15-20 min on 2 shared CPU cores
    python benchmarks/controllable_mnist.py --workdir W --quick             # a few minutes, small numbers

1. Trains (or resumes) the noise-conditional digit classifier of configs/mnist_classifier.yaml in
   ``--classifier-workdir`` (default runs/mnist_classifier), then samples ``--per-class`` digits of every class
   from the score model in ``--workdir`` with classifier guidance at each scale in ``--guidance`` (0 =
   unconditional) and judges them with the offline digit judge (scoresde.metrics.digits): the fraction judged the
   requested class, and the Frechet distance of the 10 x per-class samples to the training digits.
2. Inpaints held-out digits with the lower half masked (replacement, RePaint, DPS): the judge's accuracy on the
   fills (the original label) and the RMSE of the filled half.
3. Colorizes 16 x 16 patches of scikit-learn's sample photo flower.jpg (downscaled 4x) held out from the right quarter,
   with the exact score of the empirical distribution of 3000 patches of the other three quarters (no training):
   RMSE of the colour coordinates against the truth, beside the grey (zero colour) and mean-colour baselines.

Writes benchmarks/results/controllable_mnist.md and docs/controllable_*.png.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def _train_classifier(workdir: Path, iters: int) -> str:
    from scoresde.classifier import NoiseConditionalClassifier, accuracy_by_level
    from scoresde.config import load_config
    from scoresde.train import Trainer
    from scoresde.workdir import load_training_data

    cfg = load_config(ROOT / "configs" / "mnist_classifier.yaml", [f"training.n_iters={iters}"])
    t0 = time.perf_counter()
    trainer = Trainer(cfg, workdir, device="cpu", progress=False)
    start = trainer.step
    trainer.train(iters)
    wall = time.perf_counter() - t0
    x, y = load_training_data(cfg, split="test", labels=True)
    clf = NoiseConditionalClassifier(trainer.ema.copy_to(trainer.net).eval(), trainer.sde)
    times = torch.tensor([1e-3, 0.25, 0.5, 0.75])
    acc = accuracy_by_level(clf, x, y, times)
    return (f"classifier: steps {start}..{trainer.step} in {wall:.0f} s; held-out accuracy (EMA weights) at t = "
            + ", ".join(f"{t:g}: {a:.3f}" for t, a in zip(times.tolist(), acc.tolist())))


def _class_conditional(workdir: Path, clf_dir: Path, scales: list[float], per_class: int, sampler: str, steps: int,
                       rows: list[str], tag: str = "") -> None:
    from scoresde.guidance import ClassifierGuidedModel
    from scoresde.metrics.digits import digit_report, load_digit_classifier
    from scoresde.plotting import save_image_grid
    from scoresde.samplers import sample
    from scoresde.samplers.registry import resolve
    from scoresde.workdir import classifier_from_workdir, model_from_workdir, to_unit_range

    model, cfg, shape, step = model_from_workdir(workdir, device="cpu")
    clf, _, _, clf_step = classifier_from_workdir(clf_dir, device="cpu")
    judge = load_digit_classifier(progress=False)
    fn, kw = resolve(sampler, {"steps": steps})
    rows += [f"\n## Class-conditional samples (model step {step}, classifier step {clf_step}, {sampler} {steps} steps,"
             f" {per_class} per class)\n", "| guidance w | judged the requested class | FD (10 x per-class samples) | "
             "NFE | wall s |", "|---:|---:|---:|---:|---:|"]
    for w in scales:
        outs = []
        t0 = time.perf_counter()
        for k in range(10):
            guided = ClassifierGuidedModel(model, clf, k, w)
            with torch.no_grad():
                res = sample(guided, per_class, 1000 * k, fn, shape, **kw)
            outs.append(to_unit_range(res.samples.float(), cfg.data.scale))
        wall = time.perf_counter() - t0
        x = torch.cat(outs)
        labels = torch.arange(10).repeat_interleave(per_class)
        rep = digit_report(x, judge, labels=labels)
        row = f"| {w:g} | {rep.accuracy:.3f} | {rep.fd:.2f} | {res.nfe} | {wall:.0f} |"
        print(row, flush=True)
        rows.append(row)
        grid = torch.stack([o[:10] for o in outs]).reshape(100, *shape)  # row k = class k
        save_image_grid(grid.numpy(), ROOT / "docs" / f"controllable_class_w{w:g}{tag}.png", nrow=10)


def _inpainting(workdir: Path, n: int, steps: int, rows: list[str], tds: tuple[int, ...] = (), tag: str = "") -> None:
    from scoresde.inpainting import inpaint
    from scoresde.metrics.digits import digit_report, load_digit_classifier
    from scoresde.plotting import save_image_grid
    from scoresde.samplers import sample
    from scoresde.workdir import load_training_data, model_from_workdir, to_unit_range

    model, cfg, shape, step = model_from_workdir(workdir, device="cpu")
    x, y = load_training_data(cfg, split="test", labels=True)
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(x.shape[0], generator=g)[:n]
    x, y = x[idx], y[idx]
    mask = torch.ones(1, *shape)
    mask[..., shape[1] // 2:, :] = 0
    judge = load_digit_classifier(progress=False)
    shown = [to_unit_range(x[:10], cfg.data.scale), to_unit_range(torch.where(mask.bool(), x, -1.0)[:10], cfg.data.scale)]
    rows += [f"\n## Inpainting {n} held-out digits, lower half masked (model step {step}, SEEDS-1 {steps} steps)\n",
             "| method | NFE | judge's accuracy on the fills | RMSE of the filled half ([0, 1] units) | wall s |",
             "|---|---:|---:|---:|---:|"]
    ref = digit_report(to_unit_range(x, cfg.data.scale), judge, labels=y)
    masked = digit_report(to_unit_range(torch.where(mask.bool(), x, -1.0), cfg.data.scale), judge, labels=y)
    rows += [f"| originals | - | {ref.accuracy:.3f} | 0 | - |", f"| masked (lower half black) | - | {masked.accuracy:.3f} | "
             f"{float(((to_unit_range(x, cfg.data.scale) * (1 - mask)) ** 2).sum() / ((1 - mask).sum() * n)) ** 0.5:.3f}"
             " | - |"]
    methods = [("replacement", {}), ("repaint", {"jump": 1, "resample": 5}), ("dps", {"zeta": 1.0})]
    for method, kw in methods + [("tds", {"particles": k}) for k in tds]:
        t0 = time.perf_counter()
        res = sample(model, n, 0, inpaint, shape, known=x, mask=mask, base="seeds1", steps=steps, method=method,
                     batch_size=n, **kw)
        wall = time.perf_counter() - t0
        fill = to_unit_range(res.samples.float(), cfg.data.scale)
        rep = digit_report(fill, judge, labels=y)
        err = float((((fill - to_unit_range(x, cfg.data.scale)) * (1 - mask)) ** 2).sum() / ((1 - mask).sum() * n)) ** 0.5
        name = method + (f" j{kw['jump']} r{kw['resample']}" if method == "repaint" else "")
        name += f" zeta' {kw['zeta']:g}" if method == "dps" else ""
        name += f" K={kw['particles']} (sigma_y 0.05)" if method == "tds" else ""
        row = f"| {name} | {res.nfe} | {rep.accuracy:.3f} | {err:.3f} | {wall:.0f} |"
        print(row, flush=True)
        rows.append(row)
        shown.append(fill[:10])
    save_image_grid(torch.cat(shown).numpy(), ROOT / "docs" / f"controllable_inpainting{tag}.png", nrow=10)


def _patches(img: np.ndarray, size: int, n: int, g: np.random.Generator) -> torch.Tensor:
    h, w, _ = img.shape
    tops, lefts = g.integers(0, h - size + 1, n), g.integers(0, w - size + 1, n)
    out = np.stack([img[t:t + size, s:s + size] for t, s in zip(tops, lefts)])
    return torch.from_numpy(out.transpose(0, 3, 1, 2).astype(np.float64))


def _colorization(n_train: int, n_test: int, steps: int, rows: list[str]) -> None:
    from PIL import Image
    from sklearn.datasets import load_sample_image

    import scoresde as s
    from scoresde.colorization import colorize, decouple, grey_of
    from scoresde.plotting import save_image_grid
    from scoresde.samplers import sample

    im = Image.fromarray(load_sample_image("flower.jpg"))
    im = np.asarray(im.resize((im.width // 4, im.height // 4), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0
    cut = im.shape[1] * 3 // 4
    g = np.random.default_rng(0)
    train = _patches(im[:, :cut], 16, n_train, g) * 2 - 1
    test = _patches(im[:, cut:], 16, n_test, g) * 2 - 1
    model = s.ExactScoreModel(s.EmpiricalDistribution(train), s.VPSDE())
    grey = grey_of(test)
    truth = decouple(test)[:, 1:]
    mean_colour = decouple(train)[:, 1:].mean((0, 2, 3), keepdim=True)
    rows += [f"\n## Colorization of {n_test} held-out 16x16 patches of flower.jpg (exact empirical score of {n_train} "
             f"training patches, VP, SEEDS-1 {steps} steps)\n",
             "| method | NFE | RMSE of the colour coordinates | max abs(channel mean - grey) | wall s |",
             "|---|---:|---:|---:|---:|",
             f"| grey (zero colour) | - | {float(truth.pow(2).mean().sqrt()) / 2:.4f} | 0 | - |",
             f"| training mean colour | - | {float((truth - mean_colour).pow(2).mean().sqrt()) / 2:.4f} | 0 | - |"]
    shown = [(test[:16] + 1) / 2, ((grey[:16] + 1) / 2).expand(-1, 3, -1, -1)]
    for method, kw in (("replacement", {}), ("repaint", {"jump": 1, "resample": 5})):
        t0 = time.perf_counter()
        res = sample(model, n_test, 0, colorize, (3, 16, 16), dtype=torch.float64, grey=grey, base="seeds1", steps=steps,
                     method=method, batch_size=n_test, **kw)
        wall = time.perf_counter() - t0
        col = decouple(res.samples)[:, 1:]
        rmse = float((col - truth).pow(2).mean().sqrt()) / 2  # [0, 1] units
        err = float((grey_of(res.samples) - grey).abs().max())
        name = method + (f" j{kw['jump']} r{kw['resample']}" if method == "repaint" else "")
        row = f"| {name} | {res.nfe} | {rmse:.4f} | {err:.1e} | {wall:.0f} |"
        print(row, flush=True)
        rows.append(row)
        shown.append(((res.samples[:16] + 1) / 2).clamp(0, 1))
    save_image_grid(torch.cat(shown).float().numpy(), ROOT / "docs" / "controllable_colorization.png", nrow=16)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default=str(ROOT / "runs" / "mnist"), help="the main-job workdir (a trained MNIST model)")
    p.add_argument("--classifier-workdir", default=str(ROOT / "runs" / "mnist_classifier"))
    p.add_argument("--classifier-iters", type=int, default=3000)
    p.add_argument("--guidance", type=float, nargs="+", default=[0.0, 4.0, 8.0])
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--sampler", default="seeds2")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--inpaint-num", type=int, default=100)
    p.add_argument("--inpaint-steps", type=int, default=100)
    p.add_argument("--tds", type=int, nargs="*", default=[], metavar="K",
                   help="also inpaint with the twisted diffusion sampler, K particles per digit (costs K x 101 NFE)")
    p.add_argument("--quick", action="store_true", help="small settings (a few minutes)")
    p.add_argument("--skip", nargs="*", default=[], choices=["class", "inpaint", "color"])
    p.add_argument("--tag", default="", help="suffix of the result file and pictures (keeps earlier runs)")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.quick:
        args.classifier_iters, args.per_class, args.inpaint_num, args.inpaint_steps = 200, 10, 20, 30
        args.guidance = [0.0, 2.0]
    (ROOT / "docs").mkdir(exist_ok=True)
    rows = [f"# Controllable generation demos\n\nMachine: {platform.machine()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread(s); `python benchmarks/controllable_mnist.py "
            f"--workdir {args.workdir}{' --quick' if args.quick else ''}` (options: {vars(args)})."]
    t0 = time.perf_counter()
    if "class" not in args.skip:
        line = _train_classifier(Path(args.classifier_workdir), args.classifier_iters)
        print(line, flush=True)
        rows.append("\n" + line)
        _class_conditional(Path(args.workdir), Path(args.classifier_workdir), args.guidance, args.per_class,
                           args.sampler, args.steps, rows, args.tag)
    if "inpaint" not in args.skip:
        _inpainting(Path(args.workdir), args.inpaint_num, args.inpaint_steps, rows, tuple(args.tds), args.tag)
    if "color" not in args.skip:
        _colorization(3000, 64 if not args.quick else 16, 100 if not args.quick else 30, rows)
    rows.append(f"\nTotal wall time {time.perf_counter() - t0:.0f} s.")
    out = ROOT / "benchmarks" / "results" / f"controllable_mnist{args.tag}.md"
    out.write_text("\n".join(rows) + "\n")
    print(f"wrote {out}")
    return 0 if math.isfinite(t0) else 1


if __name__ == "__main__":
    raise SystemExit(main())

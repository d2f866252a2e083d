"""Digit quality per CPU minute: candidate main-job configs trained for the same compute budget, then judged.

    python benchmarks/mnist_candidates.py --budget-s 150                        # screening, every candidate
    python benchmarks/mnist_candidates.py --budget-s 600 --only base wide --seeds 0 1 2   # finalists

Equal wall-clock runs would measure the machine's other load, not the configs (the machine is shared),
so the budget is compute: each candidate's training throughput (images/s, one thread) is measured first,
in one process, back to back and without any other work of this script running (best of ``--rounds``
short timed runs), and each candidate then trains

    steps = budget_s x throughput / batch_size

steps. Candidates are independent processes after that (``--jobs``), so their training wall time does not
change what they get. Each trained model (EMA weights) samples ``--num`` digits with a few fast samplers,
judged by scoresde.metrics.digits (FD against the training digits; the 500 real held-out digits give the
floor, ~1.95 at N = 500). Writes benchmarks/results/mnist_candidates.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ode_range import out_of_range, train_short  # noqa: E402

from scoresde.config import load_config  # noqa: E402
from scoresde.train import Trainer  # noqa: E402
from scoresde.workdir import sample_from, to_unit_range  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "mnist_cpu.yaml"

#: the training of the main config before issue 15 chose EDM's time density and weighting (every candidate starts there)
BEFORE = ["training.t_sampling=uniform", "training.sigma_data=null"]

#: name -> overrides of the main config (the config as it was before issue 15, plus these)
CANDIDATES: dict[str, list[str]] = {name: BEFORE + over for name, over in {
    "base": ["model.prediction=v"],
    "eps (old)": ["model.prediction=eps"],
    "b128-lr2e-3": ["model.prediction=v", "training.batch_size=128", "training.lr=2.0e-3", "training.warmup=100"],
    "wide nf24": ["model.prediction=v", "model.kwargs.nf=24"],
    "no-attn": ["model.prediction=v", "model.kwargs.attn_resolutions=[]"],
    "lognormal": ["model.prediction=v", "training.t_sampling=lognormal"],
    "lognormal-edm": ["model.prediction=v", "training.t_sampling=lognormal", "training.sigma_data=0.5"],
    "lognormal-p0.6": ["model.prediction=v", "training.t_sampling=lognormal", "training.p_mean=-0.6"],
}.items()}

#: (label, sample_from keyword arguments): fast ODE and SDE samplers at <= 50 NFE
SAMPLERS = [("dpmpp2m-20", dict(sampler="dpmpp2m", steps=20)),
            ("seeds2-25", dict(sampler="seeds2", steps=25, grid="logsnr", eta=1.0))]   # the screening's settings


def throughput(overrides: list[str], steps: int = 8, warmup: int = 3) -> float:
    """Training images/s of the main config with ``overrides`` (the real trainer, one thread)."""
    cfg = load_config(CONFIG, overrides + ["training.tensorboard=false"])
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, tmp, device="cpu", progress=False)
    for _ in range(warmup):
        tr.train_step()
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.train_step()
    return steps * cfg.training.batch_size / (time.perf_counter() - t0)


def evaluate(name: str, steps: int, seed: int, num: int) -> dict:
    """Train candidate ``name`` for ``steps`` steps (seed ``seed``) and judge its samples."""
    from scoresde.data import mnist5k
    from scoresde.metrics import digit_report, load_digit_classifier

    tr, wall = train_short(CONFIG, CANDIDATES[name] + [f"training.seed={seed}"], steps)
    model = tr.ema_model()
    judge = load_digit_classifier(progress=False)
    row = {"name": name, "seed": seed, "steps": steps, "train_s": wall}
    for label, kw in SAMPLERS:
        t0 = time.perf_counter()
        out = sample_from(model, tr.cfg, tr.shape, num, seed=seed, progress=False, **kw)
        rep = digit_report(to_unit_range(out.samples.float(), tr.cfg.data.scale), judge)
        row[label] = {"fd": rep.fd, "oor": out_of_range(out.samples), "nfe": out.nfe, "s": time.perf_counter() - t0}
        print(f"{name} seed {seed}: {label} FD {rep.fd:.2f} out-of-range {row[label]['oor']:.4f}", flush=True)
    x_test, y_test = mnist5k("test")
    row["real_fd"] = digit_report(x_test[:num], judge, y_test[:num]).fd
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-s", type=float, default=150.0, help="compute budget per candidate, seconds of one thread")
    ap.add_argument("--base-steps", type=int, help="budget as this many steps of the first candidate (overrides --budget-s)")
    ap.add_argument("--throughput", nargs="+", default=[], metavar="NAME=IMG_PER_S",
                    help="reuse measured throughputs (e.g. from an interrupted run) instead of measuring them")
    ap.add_argument("--only", nargs="+", choices=list(CANDIDATES), help="candidates to run (default all)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--num", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2, help="throughput: best of this many timed runs per candidate")
    ap.add_argument("--jobs", type=int, default=2, help="candidate trainings run at once (each one thread)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mnist_candidates.md")
    ap.add_argument("--worker", nargs=3, metavar=("NAME", "STEPS", "SEED"), help=argparse.SUPPRESS)
    ap.add_argument("--collect", nargs="+", type=Path, metavar="WORKER_OUT",
                    help="only write the table, from saved worker outputs (each file's last line is a worker's JSON)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.worker:  # one candidate in its own process: JSON on the last line of stdout
        name, steps, seed = a.worker[0], int(a.worker[1]), int(a.worker[2])
        print(json.dumps(evaluate(name, steps, seed, a.num)))
        return 0
    if a.collect:
        rows = [json.loads(f.read_text().strip().splitlines()[-1]) for f in a.collect]
        names = list(dict.fromkeys(r["name"] for r in rows))
        ips = {n: float("nan") for n in names} | {k: float(v) for k, v in (t.rsplit("=", 1) for t in a.throughput)}
        if a.base_steps:
            a.budget_s = a.base_steps * load_config(CONFIG, CANDIDATES[names[0]]).training.batch_size / ips[names[0]]
        return write_table(a, rows, names, ips)
    names = a.only or list(CANDIDATES)
    ips = {n: 0.0 for n in names}
    given = {k: float(v) for k, v in (t.rsplit("=", 1) for t in a.throughput)}
    if given:
        ips = {n: given[n] for n in names}
    for _ in range(0 if given else a.rounds):  # interleaved rounds: slow moments of the shared machine hit every candidate
        for n in names:
            ips[n] = max(ips[n], throughput(CANDIDATES[n]))
            print(f"throughput {n}: {ips[n]:.0f} img/s", flush=True)
    batch = {n: load_config(CONFIG, CANDIDATES[n]).training.batch_size for n in names}
    if a.base_steps:
        a.budget_s = a.base_steps * batch[names[0]] / ips[names[0]]
    steps = {n: max(1, round(a.budget_s * ips[n] / batch[n])) for n in names}
    jobs = [(n, s) for n in names for s in a.seeds]
    rows, running = [], []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    while jobs or running:
        while jobs and len(running) < a.jobs:
            n, s = jobs.pop(0)
            cmd = [sys.executable, __file__, "--worker", n, str(steps[n]), str(s), "--num", str(a.num)]
            running.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env))
        time.sleep(2)
        for p in [p for p in running if p.poll() is not None]:
            running.remove(p)
            out = p.stdout.read().strip().splitlines()
            if p.returncode == 0 and out:
                rows.append(json.loads(out[-1]))
                print("\n".join(out[:-1]), flush=True)
            else:
                print(f"a worker failed ({p.args[3:]}): rc {p.returncode}", file=sys.stderr)
    return write_table(a, rows, names, ips)


def write_table(a: argparse.Namespace, rows: list[dict], names: list[str], ips: dict[str, float]) -> int:
    labels = [lab for lab, _ in SAMPLERS]
    real = rows[0]["real_fd"] if rows else float("nan")
    lines = ["# Main-job candidates: digit quality for the same compute budget", "",
             f"Budget: {a.budget_s:.0f} s of one thread per candidate, as steps = budget x throughput / batch "
             f"(throughput: best of {a.rounds} short timed runs, one thread, measured back to back before any "
             f"training; the machine ({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}) is "
             "shared, so equal wall-clock runs would be noise). Candidates are overrides of configs/mnist_cpu.yaml "
             f"as of issue 15. FD of {a.num} samples against the training digits (offline judge); real held-out "
             f"digits: FD {real:.2f}. Out-of-range: fraction of pixels outside [-1.2, 1.2].",
             f"Command: `python benchmarks/mnist_candidates.py {' '.join(sys.argv[1:])}`", "",
             "| candidate | overrides | img/s | steps | seed | " + " | ".join(f"FD {lab}" for lab in labels)
             + " | out-of-range " + labels[0] + " |",
             "|---|---|---:|---:|---:|" + "---:|" * (len(labels) + 1)]
    for r in sorted(rows, key=lambda r: (names.index(r["name"]), r["seed"])):
        fds = " | ".join(f"{r[lab]['fd']:.2f}" for lab in labels)
        lines.append(f"| {r['name']} | `{' '.join(CANDIDATES[r['name']])}` | {ips[r['name']]:.0f} | {r['steps']} | "
                     f"{r['seed']} | {fds} | {r[labels[0]]['oor']:.4f} |")
    lines += ["", "NFE: " + ", ".join(f"{lab} {rows[0][lab]['nfe']}" for lab in labels) if rows else ""]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

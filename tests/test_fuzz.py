"""Malformed input at every edge: command-line values, problem files, data files, configs, checkpoints, paths.

Each case is generated from a table (the sampler options from the registry itself) and must end the same
way: exit code 2, exactly one line on stderr, no traceback, nothing written to the output path and the
workdir as it was.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scoresde.cli import main
from scoresde.samplers.registry import OPTIONS, SAMPLERS

TOY = str(Path(__file__).parent.parent / "configs" / "toy_gmm.yaml")


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its size and modification time (what 'unchanged' means)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _refused(capsys, argv: list[str], out: Path | None = None, workdir: Path | None = None, needle: str = "") -> str:
    before = _tree(workdir) if workdir is not None else None
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, (argv, code, err)
    assert len(lines) == 1, (argv, err)
    assert "Traceback" not in err
    assert needle in lines[0], (needle, lines[0])
    if out is not None:
        assert not out.exists(), out
        assert not [p for p in out.parent.glob("*.tmp*")], list(out.parent.iterdir())
    if workdir is not None:
        assert _tree(workdir) == before
    return lines[0]


# ---- command-line values, generated from the sampler registry ---------------------------------------
def _bad_values(opt) -> list[str]:
    if opt.kind is bool:
        return []
    if opt.choices is not None:
        return ["bogus", ""]
    out = ["abc", "nan", "inf", "-inf", "1e400", "true"]
    if opt.kind is int:
        out += ["1.5", str(10**12), "99999999999999999999999"]
    if opt.low is not None:
        out.append(repr(opt.low - 1))
        if opt.low_open:
            out.append(repr(opt.low))
    if opt.high is not None:
        out.append(repr(opt.high * 2 + 1))
    return out


def _option_cases():
    for name, opt in OPTIONS.items():
        sampler = next(s for s, spec in SAMPLERS.items() if name in spec.options)
        for v in _bad_values(opt):
            yield pytest.param(sampler, opt.flag, v, id=f"{name}={v}")
        # an option given to a sampler that does not take it
        other = next((s for s, spec in SAMPLERS.items() if name not in spec.options), None)
        if other is None:  # every sampler takes it (denoise)
            continue
        good = "--" + name.replace("_", "-") if opt.kind is bool else opt.flag
        value = [] if opt.kind is bool else [str(opt.choices[0]) if opt.choices else "1"]
        yield pytest.param(other, good, value, id=f"{name}-not-for-{other}")


@pytest.mark.parametrize("sampler,flag,value", list(_option_cases()))
def test_sampler_option_values(sampler, flag, value, tmp_path, capsys):
    out = tmp_path / "o.npz"
    argv = ["sample", "--problem", "gmm8", "--num", "2", "--out", str(out), "--sampler", sampler, flag]
    argv += value if isinstance(value, list) else [value]
    _refused(capsys, argv, out=out)


RUN_CASES = [
    (["--num", "0"], "--num"), (["--num", "-3"], "--num"), (["--num", "x"], "--num"),
    (["--seed", "-1"], "--seed"), (["--seed", str(2**64)], "--seed"), (["--seed", "1.5"], "--seed"),
    (["--batch-size", "0"], "--batch-size"), (["--t-end", "1"], "t_end"), (["--t-end", "2"], "t_end"),
    (["--t-end", "nan"], "--t-end"), (["--t-end", "-1"], "--t-end"), (["--sde", "bogus"], "--sde"),
    (["--sde", "vp", "--sigma-max", "3"], "does not apply"), (["--sde", "ve", "--beta-min", "1"], "does not apply"),
    (["--sde", "vp", "--beta-min", "30"], "beta"), (["--sde", "ve", "--sigma-min", "60"], "sigma"),
    (["--problem", "nope"], "unknown problem"), (["--workdir", ""], ""), (["--bogus"], "unrecognized"),
]


@pytest.mark.parametrize("args,needle", RUN_CASES, ids=[" ".join(a) for a, _ in RUN_CASES])
def test_run_arguments(args, needle, tmp_path, capsys):
    out = tmp_path / "o.npz"
    argv = ["sample", "--out", str(out), "--num", "2"] + args
    if "--problem" not in args and "--workdir" not in args:
        argv += ["--problem", "gmm8"]
    _refused(capsys, argv, out=out, needle=needle)


# ---- output paths -----------------------------------------------------------------------------------
def test_output_paths(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir.npz").mkdir()
    for out, needle in [(tmp_path / "afile" / "o.npz", "is a file"), (tmp_path / "adir.npz", "is a directory"),
                        (tmp_path / "o.txt", ".npz"), (tmp_path / ".npz", ".npz"),
                        (Path("/proc/scoresde-none/o.npz"), "cannot create")]:
        _refused(capsys, ["sample", "--problem", "gmm8", "--num", "2", "--out", str(out)], needle=needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.npz", "afile"]  # nothing else appeared


# ---- problem files ----------------------------------------------------------------------------------
def _mix(**over):
    d = {"weights": [0.5, 0.5], "means": [[0.0, 1.0], [1.0, 0.0]], "stds": [0.1, 0.2]}
    d.update(over)
    return json.dumps(d)


PROBLEM_CASES = {
    "empty": "", "not-json": "{weights", "list": "[1, 2]", "number": "3", "deep": "[" * 100000 + "]" * 100000,
    "missing": json.dumps({"weights": [1.0], "means": [[0.0]]}), "unknown-key": _mix(extra=1),
    "bool-weight": _mix(weights=[True, False]), "bool-std": _mix(stds=[True, 0.1]),
    "string-mean": _mix(means=[["0", 1], [1, 0]]), "nested-std": _mix(stds=[[0.1], [0.2]]),
    "zero-dim": _mix(means=[[], []]), "huge-std": _mix(stds=[1e200, 0.1]), "negative-std": _mix(stds=[-1, 0.1]),
    "nan-mean": _mix(means=[[float("nan"), 0], [1, 0]]), "inf-std": _mix(stds=[float("inf"), 0.1]),
    "weights-sum": _mix(weights=[0.5, 0.6]), "negative-weight": _mix(weights=[1.5, -0.5]),
    "lengths": _mix(stds=[0.1]), "no-components": json.dumps({"weights": [], "means": [], "stds": []}),
    "ragged": _mix(means=[[0.0, 1.0], [1.0]]), "means-3d": _mix(means=[[[0.0]], [[1.0]]]),
    "binary": "\x00\x01\x02\xff",
}


@pytest.mark.parametrize("name", list(PROBLEM_CASES))
def test_problem_files(name, tmp_path, capsys):
    f = tmp_path / "p.json"
    f.write_bytes(PROBLEM_CASES[name].encode("utf-8", "surrogateescape") if name != "binary" else b"\x00\x01\xff")
    out = tmp_path / "o.npz"
    _refused(capsys, ["sample", "--problem", str(f), "--num", "2", "--out", str(out)], out=out,
             needle=str(f))


def test_problem_path_is_a_directory(tmp_path, capsys):
    d = tmp_path / "p.json"
    d.mkdir()
    _refused(capsys, ["sample", "--problem", str(d), "--num", "2", "--out", str(tmp_path / "o.npz")],
             needle="not a file")


def test_one_dimensional_mixture_is_valid(tmp_path, capsys):
    """Not malformed: a 1-D mixture samples and plots (its picture is a histogram)."""
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"weights": [0.3, 0.7], "means": [[-1.0], [2.0]], "stds": [0.2, 0.3]}))
    out = tmp_path / "o.npz"
    assert main(["sample", "--problem", str(f), "--num", "200", "--sampler", "seeds2", "--out", str(out),
                 "--no-progress"]) == 0
    x = np.load(out)["samples"]
    assert x.shape == (200, 1) and out.with_suffix(".png").is_file()
    assert abs(float((x > 0.5).mean()) - 0.7) < 0.12  # the heavy mode holds ~70 % of the samples


# ---- data files (likelihood --data) -----------------------------------------------------------------
def _data_cases(tmp: Path) -> dict[str, Path]:
    out = {}

    def put(name, writer):
        p = tmp / name
        writer(p)
        out[name] = p

    put("zero-bytes.npy", lambda p: p.write_bytes(b""))
    put("random.npy", lambda p: p.write_bytes(os.urandom(300)))
    put("object.npy", lambda p: np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True))
    put("pickle.npy", lambda p: p.write_bytes(pickle.dumps({"x": 1})))
    put("complex.npy", lambda p: np.save(p, np.ones((4, 2), dtype=complex)))
    put("bool.npy", lambda p: np.save(p, np.ones((4, 2), dtype=bool)))
    put("strings.npy", lambda p: np.save(p, np.array([["a", "b"]])))
    put("shape.npy", lambda p: np.save(p, np.ones((4, 3))))
    put("scalar.npy", lambda p: np.save(p, np.float64(1.0)))
    put("empty-rows.npy", lambda p: np.save(p, np.ones((0, 2))))
    put("nan.npy", lambda p: np.save(p, np.array([[np.nan, 0.0]])))
    put("huge.npy", lambda p: np.save(p, np.full((3, 2), 1e300)))
    put("many-keys.npz", lambda p: np.savez(p, a=np.ones((2, 2)), b=np.ones((2, 2))))
    put("no-keys.npz", lambda p: np.savez(p))
    put("truncated.npy", lambda p: p.write_bytes(_npy_bytes(np.ones((50, 2)))[:100]))
    (tmp / "dir.npy").mkdir()
    out["dir.npy"] = tmp / "dir.npy"
    return out


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_data_files(tmp_path, capsys):
    cases = _data_cases(tmp_path)
    for name, path in cases.items():
        out = tmp_path / f"out_{name}.npz"
        _refused(capsys, ["likelihood", "--problem", "gmm8", "--data", str(path), "--out", str(out)], out=out,
                 needle=str(path))


# ---- configs ----------------------------------------------------------------------------------------
CONFIG_CASES = {
    "empty": "", "list": "- a\n- b\n", "scalar": "3\n", "not-yaml": "training: {lr: [\n",
    "repeated-section": "training: {lr: 0.1}\ntraining: {lr: 0.2}\n", "repeated-key": "training: {lr: 0.1, lr: 0.2}\n",
    "unknown-section": "trainer: {lr: 1}\n", "unknown-key": "training: {learning_rate: 1}\n",
    "wrong-type": "training: {batch_size: many}\n", "bool-number": "training: {lr: true}\n",
    "int-bool": "data: {random_flip: 1}\n", "negative-width": "model: {arch: mlp, kwargs: {width: -3}}\n",
    "zero-points": "data: {dataset: gmm, num_points: 0}\n", "weight-decay": "training: {weight_decay: -1}\n",
    "lr-inf": "training: {lr: .inf}\n", "lr-nan": "training: {lr: .nan}\n", "t-min": "training: {t_min: 0.5}\n",
    "t-end": "sde: {t_end: 1.5}\n", "eta": "sampling: {sampler: ddim, eta: 5}\n",
    "s-churn": "sampling: {sampler: edm, s_churn: -1}\n", "snr": "sampling: {snr: -1}\n",
    "steps": "sampling: {steps: 0}\n", "not-for-sampler": "sampling: {sampler: pc, eta: 0.5}\n",
    "sampler": "sampling: {sampler: bogus}\n", "sde": "sde: {name: bogus}\n",
    "beta": "sde: {beta_min: 30, beta_max: 20}\n", "kwargs": "model: {arch: mlp, kwargs: 3}\n",
    "kwarg-name": "model: {arch: mlp, kwargs: {bogus: 1}}\n", "loss-sde": "training: {loss: smld}\n",
    "section-list": "training: [1, 2]\n", "deep": "a: " + "[" * 5000 + "]" * 5000 + "\n",
    "binary": "\x00\x01",
}


@pytest.mark.parametrize("name", list(CONFIG_CASES))
def test_configs(name, tmp_path, capsys):
    c = tmp_path / "c.yaml"
    c.write_bytes(CONFIG_CASES[name].encode())
    w = tmp_path / "w"
    _refused(capsys, ["train", "--config", str(c), "--workdir", str(w), "--no-progress"], needle="config")
    assert not w.exists()  # refused before anything was written


def test_config_path_is_a_directory(tmp_path, capsys):
    _refused(capsys, ["train", "--config", str(tmp_path), "--workdir", str(tmp_path / "w")], needle="not a file")


# ---- workdirs and checkpoints -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("run") / "w"
    assert main(["train", "--config", TOY, "--workdir", str(w), "--no-progress", "--set", "training.n_iters=2",
                 "--set", "sampling.steps=2", "--set", "sampling.num=4", "--set", "training.tensorboard=false"]) == 0
    return w


def _corrupt_checkpoints(tmp: Path, good: Path) -> dict[str, Path]:
    """Workdirs whose newest checkpoint is broken in one way each."""
    import shutil

    state = torch.load(next((good / "checkpoints").glob("ckpt_*.pt")), weights_only=True)
    writers = {
        "random-bytes": lambda p: p.write_bytes(os.urandom(2000)),
        "zero-bytes": lambda p: p.write_bytes(b""),
        "pickled-code": lambda p: torch.save({"model": {}, "x": _Evil()}, p),
        "a-list": lambda p: torch.save([1, 2, 3], p),
        "no-ema": lambda p: torch.save({k: v for k, v in state.items() if k != "ema"}, p),
        "step-string": lambda p: torch.save({**state, "step": "ten"}, p),
        "no-config": lambda p: torch.save({k: v for k, v in state.items() if k != "config"}, p),
        "bad-config": lambda p: torch.save({**state, "config": {"training": {"lr": -1}}}, p),
        "other-network": lambda p: torch.save({**state, "ema": {**state["ema"], "shadow": {
            k: torch.zeros(3, 3) for k in state["ema"]["shadow"]}}, "model": {
            k: torch.zeros(3, 3) for k in state["model"]}}, p),
        "bad-shape": lambda p: torch.save({**state, "data_shape": [-1]}, p),
    }
    out = {}
    for name, write in writers.items():
        w = tmp / name
        shutil.copytree(good, w)
        write(w / "checkpoints" / "ckpt_999.pt")
        out[name] = w
    return out


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_corrupt_checkpoints(trained, tmp_path, capsys):
    for name, w in _corrupt_checkpoints(tmp_path, trained).items():
        out = tmp_path / f"{name}.npz"
        line = _refused(capsys, ["sample", "--workdir", str(w), "--num", "2", "--out", str(out)], out=out,
                        workdir=w, needle="ckpt_999.pt")
        assert "weights_only=False" not in line  # never advise the unsafe option
        if name != "bad-config":  # training resumes with the workdir's own config.yaml, not the stored one
            _refused(capsys, ["train", "--workdir", str(w), "--no-progress"], workdir=w, needle="ckpt_999.pt")
    assert "pickled code ran" not in capsys.readouterr().out


def test_workdirs(trained, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    _refused(capsys, ["sample", "--workdir", str(tmp_path / "afile"), "--num", "2", "--out",
                      str(tmp_path / "o.npz")], needle="checkpoint")
    _refused(capsys, ["train", "--workdir", str(tmp_path / "afile"), "--config", TOY], needle="not a directory")
    _refused(capsys, ["train", "--workdir", "", "--config", TOY], needle="must not be empty")
    w = tmp_path / "ckfile"
    w.mkdir()
    (w / "checkpoints").write_text("x")
    _refused(capsys, ["train", "--workdir", str(w), "--config", TOY, "--no-progress"], workdir=w,
             needle="not a directory")
    _refused(capsys, ["train", "--workdir", str(trained), "--no-progress", "--device", "bogus"], workdir=trained,
             needle="--device")
    if not torch.cuda.is_available():
        _refused(capsys, ["train", "--workdir", str(trained), "--no-progress", "--device", "cuda"],
                 workdir=trained, needle="CUDA")


def test_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCORESDE_THREADS", "two")
    _refused(capsys, ["problems"], needle="SCORESDE_THREADS")


@pytest.mark.parametrize("argv", [
    ["sample", "--problem", "gmm8", "--out", "o.npz", "--sampler", "edm", "--s-churn", "nan"],
    ["likelihood", "--problem", "gmm8", "--data", "random.npy"],
    ["train", "--workdir", "w", "--config", "c.yaml"],
])
def test_real_stderr_is_one_line(argv, tmp_path):
    """The same in a real process: no warning above the error line, no traceback."""
    (tmp_path / "random.npy").write_bytes(os.urandom(100))
    (tmp_path / "c.yaml").write_text("training: {lr: .inf}\n")
    r = subprocess.run([sys.executable, "-m", "scoresde.cli", *argv], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "random.npy"]


def test_the_generated_cases_cover_every_option():
    ids = [p.id for p in _option_cases()]
    assert {i.split("=")[0].split("-not-for-")[0] for i in ids} == set(OPTIONS) - {"denoise"}

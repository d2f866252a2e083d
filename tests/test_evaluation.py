"""scoresde eval: shards of per-sample seeds, identical across process counts and after kill -9 + restart.

The runs use an untrained tiny U-Net on 28x28 digits (the numbers only have to match) and a tiny fixed
random feature map registered as ``--features tiny`` by a launcher script, so no judge is trained.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

LAUNCHER = '''\
import os, signal, sys
import torch
from scoresde import registry
from scoresde.metrics.features import FeatureExtractor


def tiny(device="cpu", batch_size=64):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 784, generator=g) / 28
    v = torch.randn(5, 16, generator=g)

    def fn(images):
        f = torch.tanh((images.float().flatten(1) / 255) @ w.T)
        return f, f @ v.T

    return FeatureExtractor("tiny", 16, fn, True, "random test features", batch_size, device)


registry.FEATURES["tiny"] = tiny
die_at = os.environ.get("EVAL_TEST_DIE_AT")
if die_at:  # SIGKILL in the middle of writing shard DIE_AT: a partial temporary is left behind
    import scoresde.evaluation as E

    write = E.savez_atomic

    def dying(path, **arrays):
        if path.name == f"shard_{int(die_at):06d}.npz":
            path.with_name(f".{path.name}.{os.getpid()}.tmp.npz").write_bytes(b"PK partial")
            os.kill(os.getpid(), signal.SIGKILL)
        return write(path, **arrays)

    E.savez_atomic = dying
from scoresde.cli import main
sys.exit(main(sys.argv[1:]))
'''

NUM, SHARD = 26, 6  # 5 shards, the last one short


def _args(workdir: Path, out: Path, num_flag: str = "--num") -> list[str]:
    return ["eval", "--workdir", str(workdir), num_flag, str(NUM), "--shard-size", str(SHARD), "--batch-size", "4",
            "--features", "tiny", "--ref", "mnist5k:test", "--sampler", "dpmpp2m", "--steps", "2", "--seed", "3",
            "--no-progress", "--out-dir", str(out), "--kid-subsets", "5"]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _tiny_features():
    ns: dict = {}
    exec(compile(LAUNCHER.split("registry.FEATURES")[0], "launcher", "exec"), ns)  # the launcher's tiny features
    return ns["tiny"]


def _main(args: list[str]) -> int:
    """Run the CLI in this process with the launcher's ``tiny`` features registered."""
    from scoresde import registry
    from scoresde.cli import main

    registry.FEATURES["tiny"] = _tiny_features()
    try:
        return main(args)
    finally:
        registry.FEATURES.pop("tiny")


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A tiny image workdir and an uninterrupted single-process eval of it (run in this process)."""
    from scoresde.config import load_config
    from scoresde.train import Trainer

    root = tmp_path_factory.mktemp("eval")
    kwargs = "model.kwargs={nf: 8, ch_mult: [1], num_res_blocks: 1, attn_resolutions: [], image_size: 28, dropout: 0.0}"
    cfg = load_config(None, ["data.dataset=mnist5k", "model.arch=unet", "training.batch_size=8", "training.n_iters=1",
                             kwargs])
    Trainer(cfg, root / "w", progress=False).save()
    launcher = root / "launch.py"
    launcher.write_text(LAUNCHER)
    assert _main(_args(root / "w", root / "one")) == 0
    return root


def _log(folder: Path) -> list[tuple[int, int]]:
    """(shard, rank) per generated shard, from generated.log."""
    rows = [line.split() for line in (folder / "generated.log").read_text().splitlines()]
    return [(int(r[1]), int(r[3])) for r in rows]


def _same_shards(a: Path, b: Path) -> None:
    for k in range(-(-NUM // SHARD)):
        za, zb = np.load(a / f"shard_{k:06d}.npz"), np.load(b / f"shard_{k:06d}.npz")
        for key in ("images", "features", "logits", "indices"):
            np.testing.assert_array_equal(za[key], zb[key], err_msg=f"shard {k} {key}")


def _same_metrics(a: Path, b: Path) -> None:
    ra, rb = json.loads((a / "report.json").read_text()), json.loads((b / "report.json").read_text())
    for key in ("fid", "kid", "kid_std", "is", "is_std", "precision", "recall", "nfe", "num", "sampler_settings"):
        assert ra[key] == rb[key], key


def test_single_process_eval_report(clean, capsys):
    """The report's FID is the Frechet distance of the shards' features and the reference's, recomputed here."""
    from scoresde.data import get_dataset
    from scoresde.evaluation import load_shard_images
    from scoresde.metrics import frechet_distance, gaussian_stats
    from scoresde.metrics.features import to_uint8

    one = clean / "one"
    report = json.loads((one / "report.json").read_text())
    assert report["num"] == NUM and report["nfe"] == 2 and report["shards"] == 5 and report["world_size"] == 1
    assert _log(one) == [(k, 0) for k in range(5)]
    images = load_shard_images(one, NUM, SHARD)
    assert images.dtype == torch.uint8 and images.shape == (NUM, 1, 28, 28)
    # every sample is the per-sample-seeded draw: shard 2 equals a direct sample of indices 12..17
    from scoresde.samplers import sample
    from scoresde.samplers.registry import resolve
    from scoresde.workdir import model_from_workdir, to_unit_range

    model, cfg, shape, _ = model_from_workdir(clean / "w", device="cpu")
    fn, kw = resolve("dpmpp2m", {"steps": 2})
    x = sample(model, 6, 3, fn, shape, batch_size=4, start_index=12, **kw).samples
    np.testing.assert_array_equal(images[12:18].numpy(), to_uint8(to_unit_range(x, cfg.data.scale)).numpy())
    # the FID: our features against the reference computed independently
    fx = _tiny_features()()
    ref = fx(to_uint8(get_dataset("mnist5k", split="test")[0]))[0]
    f = np.concatenate([np.load(one / f"shard_{k:06d}.npz")["features"] for k in range(5)]).astype(np.float64)
    np.testing.assert_allclose(f, fx(images)[0], rtol=0, atol=1e-6)
    assert report["fid"] == pytest.approx(frechet_distance(*gaussian_stats(f), *gaussian_stats(ref)), rel=1e-12)
    # `scoresde fid` reads the eval folder's shards: the same FID (features recomputed from the uint8 images)
    capsys.readouterr()
    assert _main(["fid", str(one), "mnist5k:test", "--features", "tiny"]) == 0
    assert json.loads(capsys.readouterr().out)["fid"] == pytest.approx(report["fid"], rel=1e-5)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
def test_two_process_gloo_eval_draws_every_seed_once_and_matches_one_process(clean):
    two = clean / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(clean / "launch.py"), *_args(clean / "w", two, "--num-samples")]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    log = _log(two)
    assert sorted(k for k, _ in log) == list(range(5))  # every shard (so every seed) exactly once
    assert {rank for _, rank in log} == {0, 1} and all(k % 2 == rank for k, rank in log)
    _same_shards(clean / "one", two)
    _same_metrics(clean / "one", two)
    assert json.loads((two / "report.json").read_text())["world_size"] == 2


def test_kill_9_mid_eval_then_restart_equals_uninterrupted_run(clean):
    killed = clean / "killed"
    env = dict(_env(), EVAL_TEST_DIE_AT="2")
    first = subprocess.run([sys.executable, str(clean / "launch.py"), *_args(clean / "w", killed)], env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    assert sorted(p.name for p in killed.glob("shard_*.npz")) == ["shard_000000.npz", "shard_000001.npz"]
    assert list(killed.glob(".shard_000002.npz.*.tmp.npz"))  # the write in flight left a partial temporary
    assert _main(_args(clean / "w", killed)) == 0
    # the restart skipped the two finished shards and redid only the interrupted one and the rest
    assert _log(killed) == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)]
    assert not list(killed.glob(".*.tmp.npz"))
    _same_shards(clean / "one", killed)
    _same_metrics(clean / "one", killed)


def test_restart_with_other_settings_is_one_line(clean, capsys):
    """Shards of another sampler setting in the output folder stop the run with one line (no mixing)."""
    args = _args(clean / "w", clean / "one")
    args[args.index("--steps") + 1] = "3"
    code = _main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "made with other settings (options differ)" in err


def test_finished_run_generates_nothing_and_bpd_matches_the_likelihood_code(clean, tmp_path, capsys):
    """Run again on a finished folder: no shard is drawn, the metrics are the same; --bpd is bits_per_dim's."""
    import shutil

    from scoresde.likelihood import bits_per_dim
    from scoresde.workdir import load_training_data, model_from_workdir

    again = tmp_path / "again"
    shutil.copytree(clean / "one", again)
    assert _main(_args(clean / "w", again) + ["--bpd", "--bpd-num", "1"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1
    assert _log(again) == _log(clean / "one")  # nothing generated
    _same_metrics(clean / "one", again)
    report = json.loads((again / "report.json").read_text())
    assert report["shards_generated_here"] == 0
    model, cfg, _, _ = model_from_workdir(clean / "w", device="cpu")
    x01 = (load_training_data(cfg, split="test")[:1] + 1) / 2
    ref = bits_per_dim(model, x01.clamp(0, 1), data_range="[-1,1]", seed=3, divergence="hutchinson", rtol=1e-5,
                       atol=1e-5, t_end=1e-5)
    assert report["bpd"] == pytest.approx(ref.mean, rel=1e-6) and report["bpd_num"] == 1
    assert report["bpd_stderr"] is None  # one image: no standard error (null in the JSON, not NaN)

"""Trainer: loss goes down, exact resume, atomic checkpoints that load without code, EMA, config errors."""
from __future__ import annotations

import pytest
import torch

from scoresde.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from scoresde.config import ConfigError, config_from_dict, load_config
from scoresde.ema import EMA
from scoresde.train import Trainer
from scoresde.workdir import model_from_workdir

TOY = {"data": {"dataset": "gmm", "num_points": 2048},
       "model": {"arch": "mlp", "kwargs": {"width": 32, "depth": 1}},
       "training": {"batch_size": 64, "n_iters": 12, "lr": 1e-3, "warmup": 2, "snapshot_every": 4,
                    "log_every": 2, "keep_checkpoints": 10},
       "sampling": {"steps": 10, "num": 16}}


def _cfg(**over):
    d = {k: dict(v) for k, v in TOY.items()}
    for sec, kv in over.items():
        d.setdefault(sec, {}).update(kv)
    return config_from_dict(d)


def test_loss_goes_down_and_log_is_written(tmp_path):
    cfg = _cfg(training={"n_iters": 300, "snapshot_every": 1000, "log_every": 10})
    tr = Trainer(cfg, tmp_path, progress=False)
    tr.train()
    rows = (tmp_path / "log.csv").read_text().strip().splitlines()[1:]
    losses = [float(r.split(",")[1]) for r in rows]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses


def test_resume_reproduces_uninterrupted_run(tmp_path):
    full = Trainer(_cfg(), tmp_path / "a", progress=False)
    full.train()
    # a run stopped after step 8 (its newest checkpoint), then started again from the workdir
    part = Trainer(_cfg(), tmp_path / "b", progress=False)
    part.train(n_iters=8)
    assert [s for s, _ in list_checkpoints(tmp_path / "b" / "checkpoints")] == [4, 8]
    resumed = Trainer(_cfg(), tmp_path / "b", progress=False)
    assert resumed.step == 8
    resumed.train()
    for (k, v), (_, w) in zip(full.net.state_dict().items(), resumed.net.state_dict().items()):
        torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)
    for k in full.ema.shadow:
        torch.testing.assert_close(full.ema.shadow[k], resumed.ema.shadow[k], rtol=0, atol=0)


def test_checkpoint_round_trip_loads_weights_only(tmp_path):
    tr = Trainer(_cfg(), tmp_path, progress=False)
    tr.train(n_iters=4)
    state = load_checkpoint(tmp_path / "checkpoints" / "ckpt_4.pt")  # weights_only=True inside
    assert state["step"] == 4
    for k, v in tr.net.state_dict().items():
        torch.testing.assert_close(state["model"][k], v, rtol=0, atol=0)
    model, cfg, shape, step = model_from_workdir(tmp_path)
    assert step == 4 and shape == (2,) and cfg.model.arch == "mlp"
    x = torch.randn(5, 2)
    t = torch.full((5,), 0.5, dtype=torch.float64)
    ema_model = tr.ema_model()
    torch.testing.assert_close(model.score(x, t), ema_model.score(x, t))


def test_checkpoint_write_is_atomic_and_pruned(tmp_path):
    for step in range(1, 6):
        save_checkpoint({"model": {"w": torch.ones(2) * step}, "step": step}, tmp_path, step, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 5]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    (tmp_path / "ckpt_9.pt").write_bytes(b"torn file")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "ckpt_9.pt")


def test_pickled_code_is_refused_without_trust(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "ckpt_1.pt"
    torch.save({"model": {}, "evil": Evil()}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_checkpoint(path)
    assert "evil" in load_checkpoint(path, trust=True)


def test_ema_is_the_exponential_average():
    net = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(net, rate=0.9, warmup=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
        ema.shadow["weight"].fill_(0.0)
        expected = 0.0
        for w in [1.0, 2.0, 3.0]:
            net.weight.fill_(w)
            ema.update(net)
            expected = 0.9 * expected + 0.1 * w
    assert abs(float(ema.shadow["weight"]) - expected) < 1e-7
    warm = EMA(net, rate=0.999, warmup=True)
    assert warm.decay() == pytest.approx(0.1)


@pytest.mark.parametrize("d,msg", [
    ({"training": {"bogus": 1}}, "unknown key training.bogus"),
    ({"nope": {}}, "unknown section"),
    ({"training": {"lr": "fast"}}, "training.lr must be float"),
    ({"training": {"batch_size": 0}}, "must be > 0"),
    ({"sde": {"name": "xx"}}, "sde.name must be one of"),
    ({"sde": {"beta_min": 30.0}}, "beta_min must be >= 0 and < sde.beta_max"),
    ({"training": {"ema_rate": 1.5}}, "ema_rate"),
    ({"model": {"arch": "mlp", "kwargs": {"bogus": 1}}}, "unknown argument"),
])
def test_config_errors(d, msg, tmp_path):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
        cfg = config_from_dict(d)
        Trainer(cfg, tmp_path, data=torch.randn(256, 2), progress=False)


def test_overrides_and_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("training:\n  batch_size: 32\nsde: {name: ve}\n")
    cfg = load_config(f, ["training.lr=0.01", "sampling.corrector=langevin"])
    assert cfg.training.batch_size == 32 and cfg.training.lr == 0.01 and cfg.sde.name == "ve"
    assert cfg.sampling.options["corrector"] == "langevin"
    f.write_text("training: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)


def test_tensorboard_gets_the_logged_scalars_and_sample_grids(tmp_path, monkeypatch):
    import scoresde.train as train_mod

    class Recorder:
        def __init__(self):
            self.scalars, self.images, self.closed = {}, [], False

        def add_scalar(self, tag, value, step):
            self.scalars.setdefault(tag, []).append((step, float(value)))

        def add_images(self, tag, images, step):
            self.images.append((tag, step, images))

        def close(self):
            self.closed = True

    rec = Recorder()
    monkeypatch.setattr(train_mod, "_tensorboard_writer", lambda logdir: rec)
    cfg = _cfg(training={"n_iters": 6, "log_every": 2})
    Trainer(cfg, tmp_path, progress=False).train()
    rows = [r.split(",") for r in (tmp_path / "log.csv").read_text().strip().splitlines()[1:]]
    assert [s for s, _ in rec.scalars["train/loss"]] == [int(r[0]) for r in rows] == [2, 4, 6]
    for (_, v), r in zip(rec.scalars["train/loss"], rows):
        assert abs(v - float(r[1])) <= 1e-5 * abs(v)
    assert rec.closed
    # tensorboard: false switches it off
    rec2 = Recorder()
    monkeypatch.setattr(train_mod, "_tensorboard_writer", lambda logdir: rec2)
    Trainer(_cfg(training={"n_iters": 2, "tensorboard": False}), tmp_path / "off", progress=False).train()
    assert rec2.scalars == {}


def test_sample_grids_are_written_periodically_in_unit_range(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    import scoresde.train as train_mod

    images = []

    class Recorder:
        def add_scalar(self, *a):
            pass

        def add_images(self, tag, x, step):
            images.append((step, x))

        def close(self):
            pass

    monkeypatch.setattr(train_mod, "_tensorboard_writer", lambda logdir: Recorder())
    x = torch.rand(64, 1, 8, 8) * 2 - 1  # tiny "images" in [-1, 1]
    cfg = _cfg(data={"dataset": "digits"}, training={"n_iters": 4, "sample_every": 2, "batch_size": 16},
               model={"arch": "unet", "kwargs": {"nf": 8, "ch_mult": [1], "num_res_blocks": 1,
                                                 "attn_resolutions": [], "image_size": 8, "max_groups": 4}},
               sampling={"steps": 3, "num": 4})
    trainer = Trainer(cfg, tmp_path, data=x, progress=False)
    trainer.train()
    pngs = sorted(p.name for p in (tmp_path / "samples").glob("*.png"))
    assert pngs == ["step_2.png", "step_4.png"]
    assert np.asarray(Image.open(tmp_path / "samples" / "step_2.png")).ndim >= 2
    assert [s for s, _ in images] == [2, 4]
    assert all(im.shape == (4, 1, 8, 8) for _, im in images)
    # the logged images are the EMA model's samples (config sampler and seed) mapped from [-1, 1] to [0, 1]
    from scoresde.workdir import sample_from

    again = sample_from(trainer.ema_model(), cfg, (1, 8, 8), 4, progress=False).samples
    torch.testing.assert_close(images[-1][1], ((again + 1) / 2).clamp(0, 1), rtol=0, atol=1e-6)
    assert float(images[-1][1].std()) > 0


def test_kill_9_mid_run_then_restart_continues_exactly(tmp_path):
    """SIGKILL a CLI training run after its first checkpoints, start it again: it resumes from the newest
    checkpoint and ends with the same weights, bit for bit, as an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys

    sets = ["data.dataset=gmm", "data.num_points=4096", "model.arch=mlp", "model.kwargs={width: 256, depth: 3}",
            "training.batch_size=256", "training.n_iters=240", "training.snapshot_every=20", "training.warmup=5",
            "sampling.steps=2", "sampling.num=4", "training.tensorboard=false"]

    def cmd(workdir):
        args = [sys.executable, "-m", "scoresde.cli", "train", "--workdir", str(workdir), "--no-progress",
                "--device", "cpu"]
        for s in sets:
            args += ["--set", s]
        return args

    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    # the first run SIGKILLs itself in the middle of step 47 (after the checkpoint of step 40, before the one of
    # step 60), so the race with the clock is gone: the kill always lands mid-run, with steps to lose
    killer = ("import os, signal, sys\n"
              "import scoresde.train as T\n"
              "step = T.Trainer.train_step\n"
              "def dying(self):\n"
              "    out = step(self)\n"
              "    if self.step == 47:\n"
              "        os.kill(os.getpid(), signal.SIGKILL)\n"
              "    return out\n"
              "T.Trainer.train_step = dying\n"
              "from scoresde.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    first = subprocess.run([sys.executable, "-c", killer] + cmd(tmp_path / "killed")[3:], env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    ckpts = tmp_path / "killed" / "checkpoints"
    killed_at = max(s for s, _ in list_checkpoints(ckpts))
    assert killed_at == 40
    r = subprocess.run(cmd(tmp_path / "killed"), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming from step {killed_at}" in r.stdout
    r = subprocess.run(cmd(tmp_path / "clean"), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    # the log of the resumed run holds every logged step once (the killed run's rows after step 40 are gone)
    steps = [int(r.split(",")[0]) for r in (tmp_path / "killed" / "log.csv").read_text().splitlines()[1:]]
    clean = [int(r.split(",")[0]) for r in (tmp_path / "clean" / "log.csv").read_text().splitlines()[1:]]
    assert steps == clean
    a = load_checkpoint(tmp_path / "killed" / "checkpoints" / "ckpt_240.pt")
    b = load_checkpoint(tmp_path / "clean" / "checkpoints" / "ckpt_240.pt")
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)
        torch.testing.assert_close(a["ema"]["shadow"][k], b["ema"]["shadow"][k], rtol=0, atol=0, msg=k)


def test_unwritable_checkpoints_lose_no_training(tmp_path, monkeypatch, capsys):
    """Snapshots that cannot be written warn and training goes on; the next one that can be written holds the
    same state as an undisturbed run's. A final snapshot that fails is rescued to a file the error names."""
    import scoresde.train as train_mod

    ref = Trainer(_cfg(), tmp_path / "ref", progress=False)
    ref.train()
    real = train_mod.save_checkpoint
    failing = {4, 8}

    def flaky(state, directory, step, keep=3):
        if step in failing and "scoresde-rescue" not in str(directory):
            raise OSError(30, "Read-only file system")
        return real(state, directory, step, keep)

    monkeypatch.setattr(train_mod, "save_checkpoint", flaky)
    tr = Trainer(_cfg(), tmp_path / "run", progress=False)
    tr.train()
    err = capsys.readouterr().err
    assert err.count("cannot write the checkpoint of step") == 2
    assert [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [12]
    a = load_checkpoint(tmp_path / "run" / "checkpoints" / "ckpt_12.pt")
    b = load_checkpoint(tmp_path / "ref" / "checkpoints" / "ckpt_12.pt")
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)

    failing.update(range(100))  # nothing can be written any more: the final state goes to a rescue file
    tr = Trainer(_cfg(), tmp_path / "run2", progress=False)
    from scoresde.train import TrainingError

    with pytest.raises(TrainingError, match="saved as") as e:
        tr.train()
    rescued = load_checkpoint(str(e.value).split("saved as ")[1].split(":")[0])
    assert rescued["step"] == 12
    for k in b["model"]:
        torch.testing.assert_close(rescued["model"][k], b["model"][k], rtol=0, atol=0)


def test_workdir_guards(tmp_path):
    """A half-written checkpoint is cleaned up; a log without checkpoints is not silently overwritten."""
    from scoresde.train import TrainingError

    w = tmp_path / "w"
    (w / "checkpoints").mkdir(parents=True)
    (w / "checkpoints" / ".ckpt_4.pt.tmp123").write_bytes(b"")
    Trainer(_cfg(training={"n_iters": 4}), w, progress=False).train()
    assert not list((w / "checkpoints").glob(".ckpt_*"))
    for p in (w / "checkpoints").iterdir():
        p.unlink()
    with pytest.raises(TrainingError, match="records a run up to step 4"):
        Trainer(_cfg(training={"n_iters": 4}), w, progress=False)
    Trainer(_cfg(training={"n_iters": 4}), w, progress=False, restart=True).train()
    assert (w / "log.csv.old").is_file() and (w / "checkpoints" / "ckpt_4.pt").is_file()

"""Trainer: loss goes down, exact resume, atomic checkpoints that load without code, EMA, config errors."""
from __future__ import annotations

import pytest
import torch

from scoresde.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from scoresde.config import ConfigError, config_from_dict, load_config
from scoresde.ema import EMA
from scoresde.train import Trainer, model_from_workdir

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
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "ckpt_9.pt")


def test_pickled_code_is_refused_without_trust(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "ckpt_1.pt"
    torch.save({"model": {}, "evil": Evil()}, path)
    with pytest.raises(CheckpointError):
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
    assert cfg.sampling.corrector == "langevin"
    f.write_text("training: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)

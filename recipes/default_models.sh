#!/usr/bin/env bash
# Reproduce the packaged models src/advcalib/data/models/{nominal,adversarial}.pt and their
# robustness table.  Usage: bash recipes/default_models.sh [OUT]   (default OUT: build/default_models)
#
# 1. Synthetic training jets: QCD multijet and semileptonic ttbar (recipes/training_jets.yaml),
#    generator seed 1, 20000 QCD + 6667 ttbar events.
# 2. Nominal DeepJet: 3 epochs, batch 512, Adam 1e-3 (x0.9 per epoch), seed 1, one torch
#    thread (several threads on a busy shared CPU slow training down by an order of magnitude).
# 3. Adversarial DeepJet: same jets, split and settings, every batch replaced by its FGSM
#    version with epsilon 0.01 (per-feature scale, no impact cap).
# 4. Held-out jets (generator seed 2, 2500 QCD + 833 ttbar events) and `advcalib evaluate`.
# 5. The best epoch (lowest validation loss) of each run is copied into the package.
set -euo pipefail

OUT=${1:-build/default_models}
EVENTS=${EVENTS:-20000}
EPOCHS=${EPOCHS:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PRESET="$REPO/recipes/training_jets.yaml"
COMMON=(--epochs "$EPOCHS" --batch-size 512 --learning-rate 1e-3 --lr-decay 0.9 --seed 1 --threads 1 --no-progress)

mkdir -p "$OUT"
[ -f "$OUT/jets/fileset.json" ] || advcalib generate --preset "$PRESET" --events "$EVENTS" --seed 1 --out "$OUT/jets"
advcalib train "$OUT/jets/fileset.json" --cache "$OUT/cache" --out "$OUT/nominal" "${COMMON[@]}"
advcalib train "$OUT/jets/fileset.json" --cache "$OUT/cache" --out "$OUT/adversarial" "${COMMON[@]}" \
    --adversarial fgsm --epsilon 0.01

[ -f "$OUT/heldout/fileset.json" ] || advcalib generate --preset "$PRESET" --events $((EVENTS / 8)) --seed 2 --out "$OUT/heldout"
advcalib evaluate "$OUT/heldout/fileset.json" --out "$OUT/evaluation" --cache "$OUT/cache_heldout" --threads 1 \
    --model nominal="$OUT/nominal/best.pt" --model adversarial="$OUT/adversarial/best.pt"

mkdir -p "$REPO/src/advcalib/data/models"
cp "$OUT/nominal/best.pt" "$REPO/src/advcalib/data/models/nominal.pt"
cp "$OUT/adversarial/best.pt" "$REPO/src/advcalib/data/models/adversarial.pt"
# The held-out robustness table travels with the models; tests compare the models against it.
cp "$OUT/evaluation/robustness.csv" "$REPO/src/advcalib/data/models/robustness.csv"

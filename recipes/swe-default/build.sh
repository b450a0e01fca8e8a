#!/usr/bin/env bash
# Rebuild xappa's default shallow-water model (swe-default) from scratch:
#   bash recipes/swe-default/build.sh [WORKDIR]
# Simulates the training data, trains the autoencoder, encodes the data, trains the prior and
# writes the model files to xappa/data/models/swe-default/, printing their registry lines.
# Each step is deterministic for a given machine, torch build and thread count (2 here);
# measured wall times on 2 cores are in recipes/swe-default/README.md.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${1:-build/swe-default}"
mkdir -p "$WORK"
xappa testbed shallow-water --trajectories 32 --days 25 --seed 0 --out "$WORK/train.zarr" --overwrite
xappa train autoencoder --data "$WORK/train.zarr" --config "$HERE/autoencoder.yaml" \
    --out "$WORK/autoencoder" --threads 2 --no-progress
xappa train encode --autoencoder "$WORK/autoencoder" --data "$WORK/train.zarr" \
    --out "$WORK/latents.zarr" --overwrite
xappa train prior --data "$WORK/latents.zarr" --config "$HERE/prior.yaml" \
    --out "$WORK/prior" --threads 2 --no-progress
python "$HERE/package.py" --prior "$WORK/prior" --data "$WORK/train.zarr" \
    --out "$HERE/../../xappa/data/models"

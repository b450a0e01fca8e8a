"""A 2-process CPU DDP run (gloo) of ``xappa train autoencoder`` under ``torchrun``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from xappa.cli import main


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_torchrun_two_processes_train_and_save_once(swe_store, tmp_path):
    out = tmp_path / "ae"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "xappa.cli",
        "train",
        "autoencoder",
        "--data",
        swe_store,
        "--out",
        str(out),
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run(
        command, check=False, capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert run.stdout.count("trained 3 steps") == 1  # rank 0 reports alone
    assert {p.name for p in out.iterdir()} == {
        "autoencoder.yaml",
        "model.safetensors",
        "state.pt",
        "stats.zarr",
    }
    assert not list(out.glob(".*.tmp"))
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["step"] == 3 and len(state["extra"]["losses"]) == 3
    # Rank 0 draws the batches of a single-process run, so the first losses agree; after the
    # first step the gradients were averaged with rank 1's, so the next ones differ.
    single = tmp_path / "single"
    assert main([*command[command.index("train") :], "--out", str(single)]) == 0
    alone = torch.load(single / "state.pt", weights_only=True)["extra"]["losses"]
    assert state["extra"]["losses"][0] == pytest.approx(alone[0], rel=1e-6)
    assert state["extra"]["losses"][1] != pytest.approx(alone[1], rel=1e-6)

"""Peak memory of ``xappa.encode`` on a dask-backed zarr store against the number of times.

``encode`` reads a dask-backed input one batch of times at a time, so its memory should not
grow with the number of times encoded. This script writes a mock ERA5-layout store (Appa's
71 channels on a small grid, one hour per chunk), then encodes its first 8, 32 and 128 times
in a fresh process each, both ways:

* ``streaming``: ``xappa.encode(ds, model=...)``, as it is;
* ``load-all``: what ``encode`` did before, ``dataset_to_tensor`` of every requested time
  first, then the same batched autoencoder calls.

For each run it prints the peak of the allocations traced by :mod:`tracemalloc` (NumPy's
arrays, dask's and xarray's objects; not torch's own buffers) and the rise of the process's
peak resident memory (``resource.getrusage``) over its value before encoding. glibc gives
each of dask's worker threads its own malloc arena, and freed batches stay in those arenas,
so the resident memory of the streaming run creeps up by a few tens of MiB that nothing
holds; ``--malloc-arenas 1`` runs the children with ``MALLOC_ARENA_MAX=1`` to show it.

Usage::

    .venv/bin/python benchmarks/encode_streaming.py                # 64 x 128, 8/32/128 times
    .venv/bin/python benchmarks/encode_streaming.py --times 8 32 128 256 --nlat 32 --nlon 64
    .venv/bin/python benchmarks/encode_streaming.py --malloc-arenas 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("streaming", "load-all")


def _spec(nlat: int, nlon: int):
    from xappa.state.spec import era5_spec

    return era5_spec(nlat=nlat, nlon=nlon)


def write_store(path: Path, n: int, nlat: int, nlon: int) -> None:
    """Write ``n`` hourly mock ERA5 states, one hour per chunk, a day at a time."""
    import pandas as pd

    from xappa.testing import mock_era5

    for start in range(0, n, 24):
        first = pd.Timestamp("2021-01-01") + pd.Timedelta(hours=start)
        ds = mock_era5(nlat=nlat, nlon=nlon, ntime=min(24, n - start), start=str(first))
        ds = ds.chunk({"time": 1})
        kwargs = {"append_dim": "time"} if start else {"mode": "w"}
        ds.to_zarr(path, consolidated=False, **kwargs)


def child(store: str, mode: str, n: int, nlat: int, nlon: int, batch: int, trace: bool) -> dict:
    """Encode the first ``n`` times of ``store`` one way; return the memory figures.

    With ``trace``, :mod:`tracemalloc` records the allocations (its own bookkeeping then
    inflates the resident memory, so the RSS figure comes from a run without it).
    """
    import resource
    import tracemalloc

    import torch
    import xarray as xr

    import xappa
    from xappa.state.convert import dataset_to_tensor
    from xappa.state.stats import standardize
    from xappa.testing import tiny_model

    torch.set_num_threads(1)
    model = tiny_model(_spec(nlat, nlon), seed=0)
    ds = xr.open_zarr(store, consolidated=False)
    times = ds.time.values[:n]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    if mode == "streaming":
        z = xappa.encode(ds, model=model, times=times, batch_size=batch).latent.values
    else:
        x, _ = dataset_to_tensor(ds, model.spec, times=times, check_step=False)
        with torch.no_grad():
            parts = [
                model.encode_standardized(standardize(x[i : i + batch], model.mean, model.std)[0])
                for i in range(0, n, batch)
            ]
        z = torch.cat(parts).numpy()
    wall = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] if trace else float("nan")
    tracemalloc.stop()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "mode": mode,
        "times": n,
        "traced_peak_mib": peak / 2**20,
        "rss_rise_mib": (after - before) / 1024,  # ru_maxrss is in KiB on Linux
        "wall_s": wall,
        "latent_shape": list(z.shape),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--nlat", type=int, default=64)
    parser.add_argument("--nlon", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--malloc-arenas", type=int, help="MALLOC_ARENA_MAX of the children")
    parser.add_argument("--child", nargs=2, metavar=("STORE", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        store, mode = args.child
        out = child(store, mode, args.n, args.nlat, args.nlon, args.batch_size, args.trace)
        print(json.dumps(out))
        return
    spec = _spec(args.nlat, args.nlon)
    frame_mib = spec.n_channels * args.nlat * args.nlon * 4 / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "mock_era5.zarr"
        t0 = time.perf_counter()
        write_store(store, max(args.times), args.nlat, args.nlon)
        print(
            f"store: {max(args.times)} hourly times x {spec.n_channels} channels x"
            f" {args.nlat} x {args.nlon} (float32, {frame_mib:.2f} MiB per time), one time per"
            f" chunk, written in {time.perf_counter() - t0:.1f} s; batch_size {args.batch_size};"
            f" MALLOC_ARENA_MAX={args.malloc_arenas or 'unset'}"
        )
        env = dict(os.environ)
        if args.malloc_arenas:
            env["MALLOC_ARENA_MAX"] = str(args.malloc_arenas)
        print(
            f"{'times':>6} {'data':>9} | {'streaming: traced':>18} {'RSS rise':>9} {'wall':>7}"
            f" | {'load-all: traced':>17} {'RSS rise':>9} {'wall':>7}"
        )
        for n in args.times:
            rows = {}
            for mode in MODES:
                cmd = [sys.executable, __file__, "--child", str(store), mode, "--n", str(n)]
                cmd += ["--nlat", str(args.nlat), "--nlon", str(args.nlon)]
                cmd += ["--batch-size", str(args.batch_size)]
                runs = [
                    subprocess.run(c, check=True, capture_output=True, text=True, env=env)
                    for c in (cmd, [*cmd, "--trace"])
                ]
                plain, traced = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
                rows[mode] = {**plain, "traced_peak_mib": traced["traced_peak_mib"]}
            s, a = rows["streaming"], rows["load-all"]
            print(
                f"{n:>6} {n * frame_mib:>6.0f} MiB | {s['traced_peak_mib']:>14.1f} MiB"
                f" {s['rss_rise_mib']:>5.0f} MiB {s['wall_s']:>6.1f}s"
                f" | {a['traced_peak_mib']:>13.1f} MiB {a['rss_rise_mib']:>5.0f} MiB"
                f" {a['wall_s']:>6.1f}s"
            )


if __name__ == "__main__":
    main()

"""Time the shallow-water testbed: 4 trajectories x 10 days at 32 x 64 (target: under 60 s).

Run with ``python benchmarks/shallow_water.py`` (``--trajectories``, ``--days``,
``--spinup-days``, ``--threads`` to vary). It prints the wall time, the machine, the date and
the diagnostics of the generated data.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import torch

from xappa.testbeds.shallow_water import diagnose, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trajectories", type=int, default=4)
    parser.add_argument("--days", type=float, default=10.0)
    parser.add_argument("--spinup-days", type=float, default=5.0)
    parser.add_argument("--nlat", type=int, default=32)
    parser.add_argument("--nlon", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    simulate(trajectories=1, days=1 / 24, spinup_days=0, nlat=args.nlat, nlon=args.nlon)  # warm
    tic = time.perf_counter()
    ds = simulate(
        trajectories=args.trajectories,
        days=args.days,
        spinup_days=args.spinup_days,
        nlat=args.nlat,
        nlon=args.nlon,
        threads=args.threads,
    )
    wall = time.perf_counter() - tic
    hours = args.trajectories * (args.days + args.spinup_days) * 24
    stats = diagnose(ds)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"date:          {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    cpu = platform.processor() or platform.machine()
    print(f"machine:       {cpu}, {os.cpu_count()} cores, load average {load:.1f}")
    print(f"torch:         {torch.__version__}, {args.threads} torch thread(s) while simulating")
    print(
        f"workload:      {args.trajectories} trajectories x {args.days:g} days "
        f"(+ {args.spinup_days:g} days spin-up) at {args.nlat} x {args.nlon}, dt "
        f"{ds.attrs['dt_seconds']:g} s"
    )
    print(f"wall time:     {wall:.1f} s ({1000 * wall / hours:.1f} ms per simulated hour)")
    print(
        f"diagnostics:   peak wind {stats['peak_wind']:.1f} m s-1, kinetic energy "
        f"{stats['kinetic_energy']:.0f} J kg-1, geopotential std "
        f"{stats['geopotential_std']:.0f} m2 s-2"
    )
    print(
        f"               lag-1 h corr {stats['lag1h_correlation']:.4f}, lag-24 h corr "
        f"{stats['lag24h_correlation']:.3f}, global-mean drift {stats['mass_drift']:.1e}"
    )


if __name__ == "__main__":
    main()

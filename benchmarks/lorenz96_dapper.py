"""Run DAPPER's classical methods on the Lorenz-96 settings of ``benchmarks/lorenz96.py``.

DAPPER is not a dependency of xappa: run this script with the Python of a scratch virtual
environment where ``pip install dapper==1.7.1`` was done, e.g.::

    python -m venv /tmp/dapper_venv && /tmp/dapper_venv/bin/pip install dapper==1.7.1
    /tmp/dapper_venv/bin/python benchmarks/lorenz96_dapper.py --setting sakov --cycles 2000 \\
        --members 16 --json /tmp/dapper_sakov_16.json
    /tmp/dapper_venv/bin/python benchmarks/lorenz96_dapper.py --setting longgap \\
        --cycles 2000 --members 16 --json /tmp/dapper_longgap_16.json

Settings (all: N = 40, F = 8, RK4 with dt = 0.05, observation error variance 1):

- ``sakov`` observes all 40 sites every step (Sakov & Oke 2008). It runs the published
  tunings (EnKF-Sqrt N=24, LETKF N=7, 3D-Var, OI, climatology), then EnKF-N and a LETKF
  tuned on the ``--loc-grid`` x ``--infl-grid`` grid, both with ``--members`` members.
- ``sparse`` observes every 4th site every step, with the published tunings only.
- ``longgap`` observes every 2nd site (0, 2, ..., 38) every 5 steps (dto = 0.25). It runs
  climatology, OI, 3D-Var (``xB`` tuned on ``--xb-grid``), EnKF-N, a tuned LETKF, LETKF-N
  (LETKF with EnKF-N's adaptive inflation, ``xN=1``, ``loc_rad`` tuned) and an EnKF-Sqrt
  tuned on ``--infl-grid``, all with ``--members`` members, then EnKF-N and the best LETKF
  with ``--large`` members.

Burn-in: DAPPER's sakov2008 model sets ``BurnIn = 2 * Tplot = 20`` time units, i.e. 400
analysis cycles of 0.05; ``longgap`` keeps 400 cycles, i.e. ``BurnIn = 100`` time units.
Scores are DAPPER's ``rmse.a`` (RMSE of the analysis mean) and ``rmv.a`` (square root of
the site-mean ensemble variance, printed as spread.a), averaged over the analyses after
the burn-in. The default grids are in ``GRIDS``. Truth and observations are drawn with ``--seed``; every method is run from
DAPPER's generator reset to ``--seed + 1``. Grid points run for ``--grid-cycles`` cycles
(default: ``--cycles``); the best point is re-run for ``--cycles`` when that is fewer.
A run whose ensemble stops being finite is reported as diverged. ``--json`` is rewritten
after every run, with ``"complete": false`` until the last one is done.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["main"]

SETTINGS = ("sakov", "sparse", "longgap")
# Default grids: the sakov ones from the LETKF literature; longgap needs more inflation and
# its 3D-Var more background weight (the best points of a first run lay on those edges).
GRIDS = {
    "sakov": {"loc": [2.0, 4.0, 6.0, 8.0], "infl": [1.01, 1.02, 1.04, 1.08]},
    "longgap": {
        "loc": [1.0, 2.0, 3.0, 4.0, 6.0, 8.0],
        "infl": [1.01, 1.02, 1.04, 1.08, 1.15, 1.25, 1.4],
        "xb": [0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0],
    },
}
BURN_IN_CYCLES = 400
LONGGAP_DKO = 5


def floats(text: str) -> list[float]:
    """Parse a comma-separated list of numbers, e.g. ``"1.01,1.02"``."""
    return [float(item) for item in text.split(",")]


def build_hmm(setting: str, cycles: int) -> tuple[Any, np.ndarray]:
    """Return DAPPER's model of ``setting`` with ``cycles`` cycles, and the observed sites."""
    import dapper.mods as modelling
    from dapper.mods.Lorenz96.sakov2008 import HMM
    from dapper.tools.localization import nd_Id_localization

    hmm = copy.deepcopy(HMM)
    if setting == "sakov":
        hmm.tseq.Ko = cycles
        return hmm, np.arange(40)
    step = {"sparse": 4, "longgap": 2}[setting]
    jj = np.arange(0, 40, step)
    obs = modelling.partial_Id_Obs(40, jj)
    obs["noise"] = 1
    obs["localizer"] = nd_Id_localization((40,), (2,), jj)
    tseq = hmm.tseq
    if setting == "longgap":
        tseq = modelling.Chronology(
            dt=tseq.dt,
            dko=LONGGAP_DKO,
            Ko=cycles,
            BurnIn=tseq.BurnIn * LONGGAP_DKO,
            Tplot=tseq.Tplot,
        )
    else:
        tseq.Ko = cycles
    return modelling.HiddenMarkovModel(hmm.Dyn, obs, tseq, hmm.X0), jj


class Runner:
    """Run DAPPER methods on one truth and observation sequence and keep their scores."""

    def __init__(self, setting: str, cycles: int, seed: int) -> None:
        from dapper.tools.seeding import set_seed

        self.setting, self.seed, self.cycles = setting, seed, cycles
        self.hmm, self.sites = build_hmm(setting, cycles)
        set_seed(seed)
        self.xx, self.yy = self.hmm.simulate()
        self.records: list[dict[str, Any]] = []
        self.save: Callable[[bool], None] | None = None

    def truncated(self, cycles: int) -> tuple[Any, np.ndarray, np.ndarray]:
        """The model, truth and observations cut to the first ``cycles`` cycles."""
        if cycles == self.cycles:
            return self.hmm, self.xx, self.yy
        hmm = copy.deepcopy(self.hmm)
        hmm.tseq.Ko = cycles
        return hmm, self.xx[: hmm.tseq.K + 1], self.yy[: cycles + 1]

    def run(
        self,
        method: str,
        members: int | None,
        params: dict[str, Any],
        make: Callable[..., Any],
        *,
        group: str = "",
        cycles: int | None = None,
    ) -> dict[str, Any]:
        """Assimilate with ``make(**params)`` and record rmse.a, spread.a and seconds."""
        from dapper.tools.seeding import set_seed

        cycles = self.cycles if cycles is None else cycles
        hmm, xx, yy = self.truncated(cycles)
        kwargs = dict(params) if members is None else {"N": members, **params}
        xp = make(**kwargs)
        set_seed(self.seed + 1)
        start = time.perf_counter()
        status, rmse, spread = "ok", math.nan, math.nan
        try:
            xp.assimilate(hmm, xx, yy, liveplots=False)
            xp.stats.average_in_time()
            rmse, spread = float(xp.avrgs.rmse.a.val), float(xp.avrgs.rmv.a.val)
        except (RuntimeError, ValueError, np.linalg.LinAlgError) as err:
            if not any(word in str(err) for word in ("finite", "inf", "NaN", "converge")):
                raise
            status = f"diverged: {type(err).__name__}: {err}"
        if not math.isfinite(rmse) and status == "ok":
            status = "diverged: rmse.a is not finite"
        record = {
            "setting": self.setting,
            "method": method,
            "N": members,
            "params": params,
            "group": group,
            "selected": False,
            "status": status,
            "rmse.a": rmse,
            "spread.a": spread,
            "seconds": time.perf_counter() - start,
            "cycles": cycles,
            "averaged_analyses": int(hmm.tseq.masko.sum()),
            "seed": self.seed,
        }
        self.records.append(record)
        if self.save is not None:
            self.save(False)
        print(row(record), flush=True)
        return record

    def tune(
        self,
        method: str,
        members: int,
        grid: Sequence[dict[str, Any]],
        make: Callable[..., Any],
        grid_cycles: int,
    ) -> dict[str, Any]:
        """Run ``grid`` for ``grid_cycles`` cycles; return the best point's full-length record."""
        group = f"{method} grid" if members is None else f"{method} N={members} grid"
        points = [
            self.run(method, members, p, make, group=group, cycles=grid_cycles) for p in grid
        ]
        ok = [p for p in points if p["status"] == "ok"]
        if not ok:
            print(f"{group}: every point diverged", flush=True)
            return points[0]
        best = min(ok, key=lambda p: p["rmse.a"])
        if grid_cycles != self.cycles:
            best = self.run(method, members, best["params"], make, group=f"{group} best")
        best["selected"] = True
        return best


def row(record: dict[str, Any]) -> str:
    """One markdown table row for ``record``."""
    params = ", ".join(f"{key}={value}" for key, value in record["params"].items())
    members = "" if record["N"] is None else str(record["N"])
    if record["status"] == "ok":
        spread = "" if math.isnan(record["spread.a"]) else f"{record['spread.a']:.3f}"
        scores = f"{record['rmse.a']:.3f} | {spread}"
    else:
        scores = "diverged | "
    return (
        f"| {record['method']} | {members} | {params} | {scores} | {record['seconds']:.0f} "
        f"| {record['cycles']} |"
    )


def run_enkf_n_and_letkf(runner: Runner, args: argparse.Namespace) -> dict[str, Any]:
    """EnKF-N and a tuned LETKF with ``args.members`` members; return the best LETKF."""
    import dapper.da_methods as da

    for x_n in args.xn_grid:
        runner.run("EnKF-N", args.members, {"xN": x_n, "rot": True}, da.EnKF_N)
    grid = [
        {"loc_rad": loc, "infl": infl, "rot": True}
        for loc in args.loc_grid
        for infl in args.infl_grid
    ]
    return runner.tune("LETKF", args.members, grid, da.LETKF, args.grid_cycles)


def run_longgap(runner: Runner, args: argparse.Namespace) -> None:
    """Reference methods, then the tuned ensemble methods, then the large ensembles."""
    import dapper.da_methods as da

    runner.run("Climatology", None, {}, da.Climatology)
    runner.run("OptInterp", None, {}, da.OptInterp)
    runner.tune("3D-Var", None, [{"xB": x} for x in args.xb_grid], da.Var3D, args.grid_cycles)
    letkf = run_enkf_n_and_letkf(runner, args)
    adaptive = [{"loc_rad": loc, "xN": 1.0, "rot": True} for loc in args.loc_grid]
    runner.tune("LETKF-N", args.members, adaptive, da.LETKF, args.grid_cycles)
    sqrt_grid = [{"upd_a": "Sqrt", "infl": infl, "rot": True} for infl in args.infl_grid]
    runner.tune("EnKF-Sqrt", args.members, sqrt_grid, da.EnKF, args.grid_cycles)
    for x_n in args.xn_grid:
        runner.run("EnKF-N", args.large, {"xN": x_n, "rot": True}, da.EnKF_N, group="large")
    runner.run("LETKF", args.large, letkf["params"], da.LETKF, group="large")


def run_published(runner: Runner) -> None:
    """The tunings published for the sakov setting (dapper/mods/Lorenz96/sakov2008.py)."""
    import dapper.da_methods as da

    runner.run("Climatology", None, {}, da.Climatology, group="published")
    runner.run("OptInterp", None, {}, da.OptInterp, group="published")
    runner.run("3D-Var", None, {"xB": 0.02}, da.Var3D, group="published")
    sqrt = {"upd_a": "Sqrt", "infl": 1.013, "rot": True}
    runner.run("EnKF-Sqrt", 24, sqrt, da.EnKF, group="published")
    letkf = {"infl": 1.04, "rot": True, "loc_rad": 4}
    runner.run("LETKF", 7, letkf, da.LETKF, group="published")


def write_json(path: str, runner: Runner, args: argparse.Namespace, complete: bool) -> None:
    """Write the settings and the records so far to ``path`` (through a temporary file)."""
    import dapper

    tseq = runner.hmm.tseq
    document = {
        "complete": complete,
        "dapper": dapper.__version__,
        "command": sys.argv,
        "setting": {
            "name": args.setting,
            "Nx": 40,
            "F": 8,
            "dt": tseq.dt,
            "dko": tseq.dko,
            "dto": tseq.dto,
            "obs_sites": runner.sites.tolist(),
            "R": 1.0,
            "burn_in_time": tseq.BurnIn,
            "burn_in_cycles": int(tseq.ioBurnIn),
        },
        "cycles": args.cycles,
        "grid_cycles": args.grid_cycles,
        "grids": {name: getattr(args, f"{name}_grid") for name in ("loc", "infl", "xb", "xn")},
        "seed": args.seed,
        "members": args.members,
        "results": runner.records,
    }
    partial = f"{path}.partial"
    with open(partial, "w") as file:
        json.dump(document, file, indent=1)
    os.replace(partial, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=SETTINGS, default="sakov")
    parser.add_argument("--cycles", type=int, default=2000, help="analysis cycles (Ko)")
    parser.add_argument("--grid-cycles", type=int, help="cycles per grid point")
    parser.add_argument("--seed", type=int, default=3000)
    parser.add_argument("--members", type=int, default=16, help="N of EnKF-N, LETKF, Sqrt")
    parser.add_argument("--large", type=int, default=40, help="N of the longgap references")
    parser.add_argument("--loc-grid", type=floats, help="LETKF loc_rad values (see GRIDS)")
    parser.add_argument("--infl-grid", type=floats, help="inflation values (see GRIDS)")
    parser.add_argument("--xb-grid", type=floats, help="3D-Var xB values (see GRIDS)")
    parser.add_argument("--xn-grid", type=floats, default=[1.0, 2.0], help="EnKF-N xN values")
    parser.add_argument("--json", help="write the settings and every result here")
    args = parser.parse_args()
    args.grid_cycles = args.cycles if args.grid_cycles is None else args.grid_cycles
    for name, default in GRIDS.get(args.setting, {}).items():
        if getattr(args, f"{name}_grid") is None:
            setattr(args, f"{name}_grid", default)
    for name in ("cycles", "grid_cycles"):
        if getattr(args, name) <= BURN_IN_CYCLES:
            parser.error(
                f"--{name.replace('_', '-')} must exceed the {BURN_IN_CYCLES} burn-in cycles; "
                f"found {getattr(args, name)}"
            )
    if args.members < 2 or args.large < 2:
        parser.error(
            f"--members and --large must be at least 2; found {args.members}, {args.large}"
        )
    if args.seed <= 0:
        parser.error(f"--seed must be positive (DAPPER refuses 0); found {args.seed}")

    runner = Runner(args.setting, args.cycles, args.seed)
    if args.json:
        runner.save = lambda complete: write_json(args.json, runner, args, complete)
    tseq = runner.hmm.tseq
    print(
        f"DAPPER, setting {args.setting!r}, {args.cycles} cycles of dto={tseq.dto:g}, "
        f"burn-in {tseq.BurnIn:g} time units ({tseq.ioBurnIn} cycles), seed {args.seed}"
    )
    print("| method | N | parameters | rmse.a | spread.a | seconds | cycles |")
    print("|---|---|---|---|---|---|---|")
    if args.setting == "longgap":
        run_longgap(runner, args)
    else:
        run_published(runner)
        if args.setting == "sakov":
            run_enkf_n_and_letkf(runner, args)
    print("Selected (best rmse.a of each grid):")
    for record in runner.records:
        if record["selected"]:
            print(row(record))
    if args.json:
        write_json(args.json, runner, args, complete=True)


if __name__ == "__main__":
    main()

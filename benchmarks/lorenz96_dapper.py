"""Run DAPPER's classical methods on the Lorenz-96 settings of ``benchmarks/lorenz96.py``.

DAPPER is not a dependency of xappa: run this script with the Python of a scratch virtual
environment where ``pip install dapper==1.7.1`` was done, e.g.::

    python -m venv /tmp/dapper_venv && /tmp/dapper_venv/bin/pip install dapper==1.7.1
    /tmp/dapper_venv/bin/python benchmarks/lorenz96_dapper.py --setting sakov --cycles 2000

Settings: ``sakov`` observes all 40 sites every 0.05 with error variance 1 (Sakov & Oke
2008); ``sparse`` observes every 4th site. Scores are DAPPER's ``rmse.a`` and ``spread.a``
after its burn-in.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=["sakov", "sparse"], default="sakov")
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=3000)
    args = parser.parse_args()

    import dapper.da_methods as da
    import dapper.mods as modelling
    from dapper.mods.Lorenz96.sakov2008 import HMM
    from dapper.tools.localization import nd_Id_localization

    hmm = copy.deepcopy(HMM)
    hmm.tseq.Ko = args.cycles
    if args.setting == "sparse":
        jj = np.arange(0, 40, 4)
        obs = modelling.partial_Id_Obs(40, jj)
        obs["noise"] = 1
        obs["localizer"] = nd_Id_localization((40,), (2,), jj)
        hmm = modelling.HiddenMarkovModel(hmm.Dyn, obs, hmm.tseq, hmm.X0)
    methods = {
        "Climatology": da.Climatology(),
        "OptInterp": da.OptInterp(),
        "3D-Var": da.Var3D(xB=0.02),
        "EnKF-Sqrt N=24": da.EnKF("Sqrt", N=24, infl=1.013, rot=True),
        "LETKF N=7": da.LETKF(N=7, infl=1.04, rot=True, loc_rad=4),
    }
    xx, yy = hmm.simulate()
    print(f"DAPPER, setting {args.setting!r}, {args.cycles} cycles")
    print("| method | rmse.a | spread.a | seconds |")
    print("|---|---|---|---|")
    for name, xp in methods.items():
        xp.seed = args.seed
        start = time.perf_counter()
        xp.assimilate(hmm, xx, yy, liveplots=False)
        xp.stats.average_in_time()
        rmse = xp.avrgs.rmse.a.val
        try:
            spread = f"{xp.avrgs.spread.a.val:.3f}"
        except AttributeError:  # no ensemble
            spread = ""
        print(f"| {name} | {rmse:.3f} | {spread} | {time.perf_counter() - start:.0f} |")


if __name__ == "__main__":
    main()

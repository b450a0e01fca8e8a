"""Errors by latitude row of a shallow-water model: autoencoder round trip, prior, posterior.

Draws the demo's truth (``--seed``, 48 hours after 5 days of spin-up), and prints for each
variable, at the two pole rows, the rows next to them and the equator:

* the RMSE over time and longitude of ``decode(encode(truth))`` (the autoencoder alone);
* with ``--posterior DIR/posterior.zarr`` (written by ``xappa demo --out DIR`` with the same
  seed), the RMSE of the posterior mean and the ensemble spread;
* the mean size of the alternating (wavenumber ``nlon / 2``) part along each row of the
  round-trip error, of the posterior mean's error and of decoded prior samples
  (``--prior-members``, 12 hours, the demo's sampler), which the truth does not have.

Usage::

    .venv/bin/python benchmarks/pole_rows.py
    .venv/bin/python benchmarks/pole_rows.py --posterior xappa-output/posterior.zarr
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import xarray as xr

import xappa
from xappa.commands.demo import DEMO_SAMPLING
from xappa.testbeds.osse import ObservingSystem, observe
from xappa.testbeds.shallow_water import simulate


def row_rmse(error: xr.DataArray) -> np.ndarray:
    """RMSE over every dimension but latitude, with shape ``(H,)``."""
    return np.sqrt((error**2).mean([d for d in error.dims if d != "latitude"])).values


def show(label: str, values: np.ndarray, rows: list[int]) -> None:
    print(f"  {label:<30}", " ".join(f"{v:9.3g}" for v in values[rows]))


def alternating(field: xr.DataArray) -> np.ndarray:
    """Mean absolute alternating-sign part along longitude of each row, shape ``(H,)``."""
    x = field.transpose(..., "latitude", "longitude").values
    part = np.abs((x * (-1.0) ** np.arange(x.shape[-1])).mean(-1))
    return part.reshape(-1, part.shape[-1]).mean(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="swe-default")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--posterior", help="posterior.zarr of `xappa demo` with this seed")
    parser.add_argument("--prior-members", type=int, default=4, help="0 to skip the prior")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = xappa.load_model(args.model)
    nlat, nlon = model.spec.shape
    truth = simulate(1, 2, nlat=nlat, nlon=nlon, spinup_days=5, seed=args.seed)
    truth = truth.isel(trajectory=0, drop=True)[list(model.spec.variables)]
    back = xappa.decode(xappa.encode(truth, model=model), model=model)
    rows = [0, 1, nlat // 2, nlat - 2, nlat - 1]
    lats = truth["latitude"].values[rows]
    print(f"{args.model}, truth seed {args.seed}; rows at latitudes {np.round(lats, 1).tolist()}")
    sources = {"round trip": back}
    if args.posterior:
        post = xr.open_zarr(args.posterior, consolidated=False).load()
        sources["posterior mean"] = post.mean("member")
    prior = None
    if args.prior_members:
        sub = truth.isel(time=slice(0, 12))
        obs = observe(sub, ObservingSystem(), seed=args.seed)
        window = (sub.time.values[0], sub.time.values[-1])
        prior = xappa.assimilate(
            list(obs.values()),
            model=model,
            window=window,
            members=args.prior_members,
            seed=args.seed,
            sampling=DEMO_SAMPLING.replace(guidance=None),
            progress=False,
        )
    for name in model.spec.variables:
        print(f"\n{name} [{truth[name].attrs.get('units', '')}]")
        for label, ds in sources.items():
            error = ds[name] - truth[name].sel(time=ds.time)
            show(f"RMSE, {label}", row_rmse(error), rows)
            show(f"alternating error, {label}", alternating(error), rows)
        if args.posterior:
            show("spread, posterior", row_rmse(post[name].std("member", ddof=1)), rows)
        if prior is not None:
            show("alternating, prior samples", alternating(prior[name]), rows)


if __name__ == "__main__":
    main()

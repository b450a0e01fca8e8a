"""Package the trained runs of swe-default into xappa's model layout, plus its climatology.

Run by ``recipes/swe-default/build.sh`` after training; prints the ``registry.txt`` lines of
the written files (paste them into ``xappa/data/registry.txt`` and ``cards.yaml``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pooch
import xarray as xr

import xappa
from xappa.models.files import save_model_files

NAME = "swe-default"
#: The stem of the files: published files are immutable, so a rebuilt model gets a new stem.
STEM = "swe-default-v2"


def climatology(data: str | Path) -> xr.Dataset:
    """Return the time-mean state of every grid point over all training trajectories."""
    ds = xr.open_zarr(data, consolidated=False)
    clim = ds.mean(("trajectory", "time")).astype("float32").compute()
    for v in clim.data_vars:
        clim[v].attrs = dict(ds[v].attrs)
        clim[v].attrs["cell_methods"] = "trajectory: time: mean"
    clim.attrs = {
        "title": f"climatology of the {NAME} training data",
        "source": str(Path(data).name),
        "Conventions": "CF-1.8",
    }
    return clim


def main() -> None:
    """Package the runs given on the command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prior", required=True, help="run directory of xappa train prior")
    parser.add_argument("--data", required=True, help="the training state store (zarr)")
    parser.add_argument("--out", default="xappa/data/models", help="output directory")
    parser.add_argument("--stem", default=STEM, help=f"file stem (default {STEM})")
    args = parser.parse_args()
    model = xappa.load_model(args.prior)
    model.name = NAME
    out = Path(args.out) / NAME
    save_model_files(model, out, stem=args.stem, show=False)
    clim_path = out / f"{args.stem}.climatology.nc"
    climatology(args.data).to_netcdf(clim_path, engine="scipy")
    for path in sorted(out.glob(f"{args.stem}.*")):
        print(f"{NAME}/{path.name} {pooch.file_hash(str(path), alg='sha256')}")


if __name__ == "__main__":
    main()

"""Models loaded in float64 or bfloat16 run end to end on the CPU: encode, decode, assimilate
(reanalysis and filter) and forecast.

float64 weights keep states, statistics and the guidance solver in float64 (outputs are
float64); bfloat16 weights compute the networks in bfloat16 while states stay float32. The
float32 run of the same saved model is the reference: the same weights, so encoding and
decoding agree to the precision of the dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import xappa
from xappa.models.hub import load_model, save_model_files
from xappa.observations import sample_points, stations
from xappa.testing import mock_era5, tiny_model

FAST = xappa.SamplingConfig(sampler="ddim", steps=2)
VAR = "2m_temperature"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model")
    save_model_files(tiny_model(), path, stem="tiny", show=False)
    return str(path)


@pytest.fixture(scope="module")
def truth() -> xr.Dataset:
    return mock_era5(variables=tiny_model().spec.variables, nlat=16, nlon=32, ntime=4)


COMMON = {"members": 2, "sampling": FAST, "progress": False}


def _obs(truth: xr.Dataset) -> xr.Dataset:
    sites = stations([48.8, -33.9, 10.0], [2.35, 151.2, 30.0], names=["a", "b", "c"])
    return sample_points(truth, sites, error_std=0.5, seed=0)


def _run(model: xappa.Model, truth: xr.Dataset) -> dict[str, xr.Dataset]:
    z = xappa.encode(truth, model=model)
    return {
        "encode": z,
        "decode": xappa.decode(z, model=model),
        "reanalysis": xappa.assimilate(_obs(truth), model=model, **COMMON),
        "filter": xappa.assimilate(_obs(truth), model=model, mode="filter", **COMMON),
        "forecast": xappa.forecast(truth, model=model, lead="2h", **COMMON),
    }


@pytest.fixture(scope="module")
def reference(saved, truth) -> dict[str, xr.Dataset]:
    return _run(load_model(saved, device="cpu"), truth)


def _relative_error(got: xr.Dataset, want: xr.Dataset, name: str) -> float:
    diff = np.abs(got[name].values.astype(np.float64) - want[name].values)
    return float(diff.max() / want[name].std())


@pytest.mark.parametrize(
    ("dtype", "out_dtype", "tolerance"),
    [(torch.float64, np.float64, 1e-4), ("bfloat16", np.float32, 0.1)],
    ids=["float64", "bfloat16"],
)
def test_encode_decode_assimilate_forecast_run_in_the_dtype(
    saved, truth, reference, dtype, out_dtype, tolerance
) -> None:
    model = load_model(saved, device="cpu", dtype=dtype)
    assert model.dtype == xappa.models.hub.check_dtype(dtype)
    out = _run(model, truth)
    for name, ds in out.items():
        var = "latent" if name == "encode" else VAR
        assert ds[var].dtype == out_dtype, name
        assert bool(np.isfinite(ds[var].values).all()), name
        assert ds.attrs["xappa_weight_hash"] == model.weight_hash  # the weights that ran
    assert model.weight_hash != load_model(saved, device="cpu").weight_hash
    # the same weights in another precision: encoding and decoding agree to that precision
    assert _relative_error(out["encode"], reference["encode"], "latent") < tolerance
    assert _relative_error(out["decode"], reference["decode"], VAR) < tolerance
    if dtype == "bfloat16":
        # states (and so the seeded noise) stay float32: only the networks' rounding differs;
        # float64 states draw other noise, so only the encoder and decoder are compared there
        for name in ("reanalysis", "filter", "forecast"):
            assert _relative_error(out[name], reference[name], VAR) < 0.5, name
    # seeded: the same call gives the same ensemble
    again = xappa.assimilate(_obs(truth), model=model, **COMMON)
    xr.testing.assert_identical(again, out["reanalysis"])


@pytest.mark.parametrize(
    "dtype",
    [torch.int64, np.float64, "float128", torch.float16, "double precision"],
    ids=["int", "numpy", "unknown-name", "float16", "phrase"],
)
def test_other_dtypes_are_refused_before_loading(saved, dtype) -> None:
    with pytest.raises(TypeError, match=r"dtype must be None or one of \['torch.float32'"):
        load_model(saved, device="cpu", dtype=dtype)

import numpy as np
import pytest
import torch
import xarray as xr

from xappa.state.convert import dataset_to_tensor
from xappa.state.spec import era5_spec
from xappa.state.stats import (
    compute_stats,
    read_stats,
    standardize,
    stats_to_tensors,
    unstandardize,
    write_stats,
)
from xappa.testing import mock_era5

NLAT, NLON, NTIME = 6, 12, 6
SPEC = era5_spec(nlat=NLAT, nlon=NLON)


@pytest.fixture(scope="module")
def ds() -> xr.Dataset:
    return mock_era5(nlat=NLAT, nlon=NLON, ntime=NTIME)


@pytest.fixture(scope="module")
def stats(ds) -> xr.Dataset:
    return compute_stats(ds, SPEC)


def reference(ds: xr.Dataset, name: str, weights: np.ndarray | None = None) -> np.ndarray:
    """NumPy mean and std of a variable, over (statistic, [level])."""
    x = ds[name].values.astype(np.float64)
    if weights is None:
        m1, m2 = np.nanmean(x, axis=(-2, -1)), np.nanmean(x**2, axis=(-2, -1))
    else:
        w = np.where(np.isnan(x), 0.0, weights[:, None])
        m1 = np.nansum(w * x, axis=(-2, -1)) / w.sum(axis=(-2, -1))
        m2 = np.nansum(w * x**2, axis=(-2, -1)) / w.sum(axis=(-2, -1))
    mean = m1.mean(axis=0)
    return np.stack([mean, np.sqrt(m2.mean(axis=0) - mean**2)])


def test_dask_stats_match_numpy_chunk_by_chunk(ds):
    blocks = []

    def spy(block: np.ndarray) -> np.ndarray:
        if block.size:  # dask also calls it on empty arrays to infer metadata
            blocks.append(block.shape)
        return block

    lazy = ds.chunk({"time": 1})
    lazy = lazy.map(lambda v: v.copy(data=v.data.map_blocks(spy, dtype=v.dtype)))
    stats = compute_stats(lazy, SPEC)
    assert len(blocks) == NTIME * len(SPEC.variables)
    assert {shape[0] for shape in blocks} == {1}  # never more than one time step at once
    for name in SPEC.variables:
        np.testing.assert_allclose(stats[name].values, reference(ds, name), rtol=1e-6)


def test_cos_lat_weighting(ds):
    stats = compute_stats(ds.chunk({"time": 2}), SPEC, weighting="cos_lat")
    weights = np.cos(np.deg2rad(ds.latitude.values)).clip(0)
    for name in ("2m_temperature", "sea_surface_temperature", "geopotential"):
        np.testing.assert_allclose(stats[name].values, reference(ds, name, weights), rtol=1e-6)
    assert stats.attrs["weighting"] == "cos_lat"


def test_stats_layout_and_selected_times(ds, stats):
    assert stats["2m_temperature"].dims == ("statistic",)
    assert stats["temperature"].dims == ("statistic", "level")
    assert list(stats.statistic.values) == ["mean", "std"]
    assert stats["geopotential"].attrs["units"] == "m2 s-2"
    assert np.isfinite(stats["sea_surface_temperature"].values).all()  # NaN cells ignored
    some = compute_stats(ds, SPEC, times=ds.time.values[:2])
    assert some.attrs["n_times"] == 2
    np.testing.assert_allclose(
        some["2m_temperature"].values, reference(ds.isel(time=[0, 1]), "2m_temperature")
    )


def test_constant_channel_std_is_clipped(ds):
    flat = ds.assign(total_precipitation=ds.total_precipitation * 0)
    stats = compute_stats(flat, SPEC, min_std=1e-6)
    assert float(stats.total_precipitation.sel(statistic="std")) == 1e-6


@pytest.mark.parametrize("suffix", [".nc", ".zarr"], ids=["netcdf", "zarr"])
def test_write_read(stats, tmp_path, suffix):
    path = tmp_path / f"stats{suffix}"
    write_stats(stats, path)
    xr.testing.assert_identical(read_stats(path), stats)


def test_stats_to_tensors_order_and_units(stats):
    mean, std = stats_to_tensors(stats, SPEC, dtype=torch.float64)
    assert mean.shape == std.shape == (71,)
    c = SPEC.channel_index("geopotential", 500)
    assert float(mean[c]) == float(stats.geopotential.sel(statistic="mean", level=500))
    converted = stats.copy()
    converted["temperature"] = (stats.temperature - 273.15).assign_attrs(units="degC")
    converted["temperature"].loc[{"statistic": "std"}] = stats.temperature.sel(statistic="std")
    mean2, std2 = stats_to_tensors(converted, SPEC, dtype=torch.float64)
    torch.testing.assert_close(mean2, mean)
    torch.testing.assert_close(std2, std)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda s: s.drop_vars("geopotential"), "missing variable 'geopotential'"),
        (lambda s: s.sel(level=[500, 850]), "missing level 50"),
    ],
    ids=["variable", "level"],
)
def test_stats_to_tensors_rejects(stats, make, match):
    with pytest.raises(KeyError, match=match):
        stats_to_tensors(make(stats), SPEC)


def test_standardize_round_trip_and_nan_mask(ds, stats):
    x, _ = dataset_to_tensor(ds, SPEC)
    mean, std = stats_to_tensors(stats, SPEC)
    z, nan = standardize(x, mean, std)
    assert torch.isfinite(z).all()
    assert torch.equal(nan, torch.isnan(x))
    assert nan[:, SPEC.channel_index("sea_surface_temperature")].any()
    assert z[nan].abs().max() == 0
    sst = SPEC.channel_index("sea_surface_temperature")
    assert abs(float(z[:, sst][~nan[:, sst]].mean())) < 1e-5
    back = unstandardize(z, mean, std, nan_mask=nan)
    torch.testing.assert_close(back, x, equal_nan=True, rtol=1e-6, atol=1e-6)
    assert torch.equal(torch.isnan(back), nan)


def test_bad_arguments(ds, tmp_path):
    with pytest.raises(ValueError, match="weighting must be one of"):
        compute_stats(ds, SPEC, weighting="area")
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., C, H, W\)"):
        standardize(torch.zeros(2, 70, 4, 4), torch.zeros(71), torch.ones(71))
    with pytest.raises(ValueError, match="must end in .nc or .zarr"):
        write_stats(xr.Dataset(), "stats.txt")
    xr.Dataset({"a": ("x", [1.0])}).to_netcdf(tmp_path / "other.nc")
    with pytest.raises(KeyError, match="'statistic' coordinate with 'mean' and 'std'"):
        read_stats(tmp_path / "other.nc")

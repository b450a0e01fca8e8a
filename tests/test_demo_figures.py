"""The demo's figures: titles (model, variable, valid time in UTC), panels, aspect, error map."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from xappa.commands.demo import _figures, demo_figure
from xappa.testbeds.osse import ObservingSystem, OsseResult, observe
from xappa.testing import mock_era5

NAMES = ("geopotential", "u_component_of_wind", "v_component_of_wind")


@pytest.fixture(scope="module")
def result() -> OsseResult:
    truth = mock_era5(variables=[], nlat=16, nlon=32, ntime=3, levels=[])
    rng = np.random.default_rng(0)
    base = mock_era5(variables=["2m_temperature"], nlat=16, nlon=32, ntime=3)["2m_temperature"]
    units = {"geopotential": "m2 s-2", "u_component_of_wind": "m s-1"}
    units["v_component_of_wind"] = "m s-1"
    for i, name in enumerate(NAMES):
        truth[name] = (base - 250.0 + 10 * i).assign_attrs(units=units[name])
    truth = truth[list(NAMES)]
    noise = rng.normal(size=(4, *truth["geopotential"].shape))
    post = xr.Dataset(
        {n: truth[n] + xr.DataArray(noise, dims=("member", *truth[n].dims)) for n in NAMES},
        attrs={"xappa_model": "swe-default"},
    ).assign_coords(member=np.arange(4))
    obs = observe(truth, ObservingSystem(stations=12), seed=0)
    return OsseResult(truth, obs, post, None, xr.Dataset(), {}, {})


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


@pytest.mark.parametrize(
    ("name", "observed"),
    [
        ("geopotential", "observations (swath, stations)"),
        ("u_component_of_wind", "observations (stations)"),
    ],
    ids=["z-swath-and-stations", "u-stations-only"],
)
def test_titles_name_model_variable_time_and_sources(result, name, observed):
    fig = demo_figure(result, name)
    try:
        title = fig._suptitle.get_text()
        assert title.startswith(f"swe-default: {name}")
        assert "valid 2021-01-01 02:00 UTC" in title
        titles = _titles(fig)
        assert titles[:3] == ["truth", observed, "posterior mean (4 members)"]
        assert "error: posterior mean minus truth" in titles
    finally:
        plt.close(fig)


def test_maps_have_equal_aspect_and_the_error_map_is_mean_minus_truth(result):
    fig = demo_figure(result, "geopotential")
    try:
        maps = [ax for ax in fig.axes if ax.get_title() and "latitude" not in ax.get_title()]
        maps = [ax for ax in maps if ax.get_xlabel().startswith("longitude")]
        assert len(maps) == 5
        assert all(ax.get_aspect() == 1.0 for ax in maps)
        error_ax = next(ax for ax in maps if ax.get_title().startswith("error"))
        drawn = error_ax.collections[0].get_array().reshape(16, 32)
        post, truth = result.posterior["geopotential"], result.truth["geopotential"]
        expected = (post.mean("member") - truth).isel(time=-1).sortby("latitude").values
        np.testing.assert_allclose(drawn, expected, rtol=1e-6)
    finally:
        plt.close(fig)


def test_figures_writes_one_png_per_variable(result, tmp_path):
    files = _figures(result, tmp_path)
    assert [f.name for f in files] == [f"{n}.png" for n in NAMES]
    assert all(f.stat().st_size > 10_000 for f in files)


@pytest.mark.parametrize("order", [1, -1], ids=["south-first", "north-first"])
def test_draw_map_is_equal_aspect_north_up(order):
    from xappa.verify.plot import draw_map

    field = mock_era5(variables=["2m_temperature"], nlat=8, nlon=16, ntime=1)["2m_temperature"]
    field = field.isel(time=0).isel(latitude=slice(None, None, order))
    fig, ax = plt.subplots()
    try:
        mesh = draw_map(ax, field, title="t2m", colorbar="K")
        assert ax.get_aspect() == 1.0 and ax.get_title() == "t2m"
        assert ax.get_ylim() == (-90.0, 90.0)
        drawn = mesh.get_array().reshape(8, 16)
        np.testing.assert_array_equal(drawn[0], field.sortby("latitude").values[0])  # south row
        assert len(fig.axes) == 2  # the colour bar
    finally:
        plt.close(fig)


def test_utc_names_the_zone():
    from xappa.verify.plot import utc

    assert utc(np.datetime64("2021-03-21T06:00")) == "2021-03-21 06:00 UTC"

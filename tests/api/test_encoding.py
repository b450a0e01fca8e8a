"""encode/decode: shapes, conventions, units, attributes, determinism and errors."""

from __future__ import annotations

import dask.array
import dask.callbacks
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xappa
from xappa.models.states import MEMBER_ATTRS, state_dataset
from xappa.state.convert import dataset_to_tensor
from xappa.state.stats import standardize
from xappa.testing import mock_era5, tiny_model


@pytest.fixture(scope="module")
def model() -> xappa.Model:
    return tiny_model(seed=1)


@pytest.fixture(scope="module")
def truth(model: xappa.Model) -> xr.Dataset:
    return mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=3)


def test_encode_shape_coords_attrs(model, truth):
    z = xappa.encode(truth, model=model)
    assert z.latent.dims == ("time", "latent_channel", "y", "x")
    assert z.latent.shape == (3, *model.latent_shape)
    np.testing.assert_array_equal(z.time.values, truth.time.values)
    assert z.attrs["xappa_model"] == "tiny"
    assert z.attrs["xappa_weight_hash"] == model.weight_hash
    assert z.attrs["xappa_version"] == xappa.__version__
    assert np.isfinite(z.latent.values).all()


def test_encode_is_deterministic(model, truth):
    xr.testing.assert_identical(xappa.encode(truth, model=model), xappa.encode(truth, model=model))


def test_encode_times_selects(model, truth):
    z = xappa.encode(truth, model=model, times=truth.time[1:], batch_size=1)
    full = xappa.encode(truth, model=model)
    np.testing.assert_allclose(z.latent.values, full.latent.values[1:], atol=1e-4)


@pytest.mark.parametrize("order", ["descending", "ascending"], ids=["north-first", "south-first"])
@pytest.mark.parametrize("convention", ["0..360", "-180..180"])
def test_conventions_in_and_out(model, truth, order, convention):
    ds = truth if order == "descending" else truth.isel(latitude=slice(None, None, -1))
    if convention == "-180..180":
        ds = ds.assign_coords(longitude=((ds.longitude + 180) % 360 - 180)).sortby("longitude")
    z = xappa.encode(ds, model=model)
    ref_z = xappa.encode(truth, model=model).latent.values
    np.testing.assert_allclose(z.latent.values, ref_z, atol=1e-4)
    out = xappa.decode(z, model=model)
    lat = out.latitude.values
    assert (lat[0] > lat[-1]) == (order == "descending")
    assert (out.longitude.min() < 0) == (convention == "-180..180")
    assert bool((np.diff(out.longitude.values) > 0).all())
    # the same field whatever the conventions
    ref = xappa.decode(xappa.encode(truth, model=model), model=model)
    xr.testing.assert_allclose(
        out.sortby(["latitude", "longitude"]), _like(ref, out), atol=1e-3, rtol=1e-4
    )


def _like(ref: xr.Dataset, out: xr.Dataset) -> xr.Dataset:
    if float(out.longitude.min()) < 0:
        lon = ref.longitude
        ref = ref.assign_coords(longitude=((lon + 180) % 360 - 180).assign_attrs(lon.attrs))
    return ref.sortby(["latitude", "longitude"])


def test_decode_units_and_cf_attributes(model, truth):
    out = xappa.decode(xappa.encode(truth, model=model), model=model)
    assert set(out.data_vars) == set(model.spec.variables)
    assert out["2m_temperature"].attrs["units"] == "K"
    assert out["2m_temperature"].attrs["standard_name"] == "air_temperature"
    assert out["10m_u_component_of_wind"].attrs["units"] == "m s-1"
    assert out.latitude.attrs["units"] == "degrees_north"
    assert out.attrs["xappa_weight_hash"] == model.weight_hash
    # physical magnitudes: the decoder returns standardized pixels, unstandardized here
    assert 150 < float(out["2m_temperature"].mean()) < 350


def test_decode_member_dimension(model, truth):
    z = xappa.encode(truth, model=model)
    zz = xr.concat([z, z], dim="member").assign_coords(member=[0, 1])
    zz.attrs = z.attrs
    out = xappa.decode(zz, model=model)
    assert out["2m_temperature"].dims == ("member", "time", "latitude", "longitude")
    xr.testing.assert_allclose(out.isel(member=1, drop=True), xappa.decode(z, model=model))


def test_round_trip_random_model_is_finite():
    m = tiny_model(train_steps=0)
    ds = mock_era5(variables=m.spec.variables, nlat=16, nlon=32, ntime=2)
    out = xappa.decode(xappa.encode(ds, model=m), model=m)
    assert out["2m_temperature"].shape == ds["2m_temperature"].shape
    assert np.isfinite(out["2m_temperature"].values).all()


def test_model_to_and_repr(model):
    assert model.to("cpu") is model
    assert model.device == torch.device("cpu")
    assert "window=4" in repr(model)


@pytest.mark.parametrize(
    ("kind", "error", "match"),
    [
        ("missing", KeyError, "missing variable"),
        ("units", ValueError, "expected units convertible"),
        ("model", TypeError, "model must be an xappa.Model"),
    ],
    ids=["missing-variable", "bad-units", "not-a-model"],
)
def test_encode_errors(model, truth, kind, error, match):
    ds, m = truth, model
    if kind == "missing":
        ds = truth.drop_vars("2m_temperature")
    elif kind == "units":
        ds = truth.copy()
        ds["2m_temperature"].attrs["units"] = "m s-1"
    else:
        m = object()
    with pytest.raises(error, match=match):
        xappa.encode(ds, model=m)


def test_decode_errors(model, truth):
    z = xappa.encode(truth, model=model)
    with pytest.raises(KeyError, match="'latent' variable"):
        xappa.decode(z.rename(latent="z"), model=model)
    with pytest.raises(ValueError, match="frames must have shape"):
        xappa.decode(z.isel(x=slice(0, 3)), model=model)


def test_model_from_release(model, truth):
    from xappa.models.release import AppaModel

    release = AppaModel(model.autoencoder, model.denoiser, model.latent_mean, model.latent_std)
    adapted = xappa.Model.from_release(release, model.spec, model.stats, name="appa-like")
    assert adapted.window == model.window
    assert adapted.weight_hash == model.weight_hash
    z = xappa.encode(truth, model=adapted)
    assert z.attrs["xappa_model"] == "appa-like"
    xr.testing.assert_allclose(z.latent, xappa.encode(truth, model=model).latent)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"window": 0}, ValueError, "window must be a positive int"),
        ({"latent_std": torch.zeros(4)}, ValueError, "latent_std must be positive"),
        ({"latent_mean": torch.zeros(3)}, ValueError, r"latent_mean must have shape \(4,\)"),
        ({"stats": "stats.nc"}, TypeError, "stats must be an xarray.Dataset"),
    ],
    ids=["window", "latent-std", "latent-mean", "stats"],
)
def test_model_rejects_bad_parts(model, change, error, match):
    parts = {
        "name": "m",
        "spec": model.spec,
        "stats": model.stats,
        "autoencoder": model.autoencoder,
        "denoiser": model.denoiser,
        "latent_mean": model.latent_mean,
        "latent_std": model.latent_std,
        "window": 4,
    }
    with pytest.raises(error, match=match):
        xappa.Model(**{**parts, **change})


class _Loads(dask.callbacks.Callback):
    """Record, for every dask compute, which time blocks of a recording array it loaded."""

    def __init__(self, log: list):
        super().__init__()
        self.log = log

    def _start(self, dsk):
        self.log.append("compute")


def _recording(ds: xr.Dataset, log: list) -> xr.Dataset:
    """Return ``ds`` dask-backed, one time per chunk, logging each time block it loads."""
    out = ds.copy()
    for name, var in ds.data_vars.items():
        values = var.values

        def load(block_info=None, values=values, name=name):
            t = block_info[None]["chunk-location"][0]
            log.append((name, t))
            return values[t : t + 1]

        chunks = ((1,) * values.shape[0], *[(n,) for n in values.shape[1:]])
        out[name] = (var.dims, dask.array.map_blocks(load, chunks=chunks, dtype=values.dtype))
        out[name].attrs = var.attrs
    return out


def test_encode_streams_dask_inputs_one_batch_of_times_at_a_time(model):
    truth = mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=7)
    log: list = []
    lazy = _recording(truth, log)
    with _Loads(log):
        z = xappa.encode(lazy, model=model, batch_size=3)
    groups, current = [], None
    for entry in log:
        if entry == "compute":
            current = set()
            groups.append(current)
        elif current is not None:
            current.add(entry[1])
    loaded = [g for g in groups if g]
    # every time is read once, and no compute holds more than one batch of times
    assert loaded == [{0, 1, 2}, {3, 4, 5}, {6}]
    assert sorted(t for _, t in (e for e in log if e != "compute")) == sorted(
        [t for t in range(7) for _ in model.spec.variables]
    )
    expected = xappa.encode(truth, model=model, batch_size=3).latent.values
    np.testing.assert_array_equal(z.latent.values, expected)


def test_encode_output_matches_encoding_the_whole_tensor(model):
    truth = mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=5)
    x, _ = dataset_to_tensor(truth, model.spec, check_step=False)
    with torch.no_grad():
        ref = [
            model.encode_standardized(standardize(x[i : i + 2], model.mean, model.std)[0])
            for i in range(0, 5, 2)
        ]
    z = xappa.encode(truth.chunk({"time": 1}), model=model, batch_size=2)
    np.testing.assert_array_equal(z.latent.values, torch.cat(ref).numpy())


def test_outputs_name_their_source_and_members(model, truth):
    z = xappa.encode(truth, model=model)
    zz = xr.concat([z, z], dim="member").assign_coords(member=[5, 6])
    zz.attrs = z.attrs
    out = xappa.decode(zz, model=model)
    assert out["member"].attrs["standard_name"] == "realization"
    np.testing.assert_array_equal(out["member"].values, [5, 6])
    for ds, action in ((z, "xappa.encode"), (out, "xappa.decode")):
        assert ds.attrs["Conventions"] == "CF-1.8"
        assert "'tiny'" in ds.attrs["source"] and model.weight_hash in ds.attrs["source"]
        assert ds.attrs["history"].startswith(action)


@pytest.mark.parametrize(
    ("shape", "members", "match"),
    [
        ((2, 3), [0, 1, 2], r"one label per member \(2\)"),
        ((3,), [0, 1, 2], "x has no member dimension"),
    ],
    ids=["wrong-count", "no-member-dim"],
)
def test_state_dataset_checks_members(model, shape, members, match):
    x = torch.zeros(*shape, model.spec.n_channels, *model.spec.shape)
    times = pd.date_range("2021-01-01", periods=shape[-1], freq="1h")
    with pytest.raises(ValueError, match=match):
        state_dataset(x, model, times, {}, members=members)


def test_state_dataset_member_coordinate(model):
    x = torch.zeros(2, 3, model.spec.n_channels, *model.spec.shape)
    times = pd.date_range("2021-01-01", periods=3, freq="1h")
    ds = state_dataset(x, model, times, {}, action="xappa.assimilate (reanalysis)")
    np.testing.assert_array_equal(ds["member"].values, [0, 1])
    assert ds["member"].attrs == MEMBER_ATTRS
    assert ds.attrs["history"].startswith("xappa.assimilate (reanalysis)")


def _row_rmse(a: xr.Dataset, b: xr.Dataset, name: str) -> np.ndarray:
    return np.sqrt(((a[name] - b[name]) ** 2).mean(("time", "longitude"))).values


@pytest.mark.slow
@pytest.mark.parametrize(("pole", "neighbour"), [(0, 1), (-1, -2)], ids=["north", "south"])
def test_round_trip_error_of_the_pole_rows_is_near_their_neighbours(pole, neighbour):
    from xappa.testbeds.shallow_water import simulate

    model = xappa.load_model("swe-default")
    truth = simulate(1, 1, nlat=32, nlon=64, spinup_days=5, seed=2026).isel(trajectory=0)
    truth = truth[list(model.spec.variables)]
    back = xappa.decode(xappa.encode(truth, model=model), model=model)
    ratios = {}
    for name in model.spec.variables:
        rows = _row_rmse(back, truth, name)
        ratios[name] = rows[pole] / rows[neighbour]
    assert max(ratios.values()) < 3.0, ratios

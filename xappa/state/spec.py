"""The model state: which variables and levels make the channels, on which grid and time step.

A :class:`StateSpec` fixes the channel layout ``(variable, level)``, the latitude/longitude grid
(with its latitude order and longitude convention), the time step and the units. The
conversion of Datasets to and from tensors in a spec's layout is in
:mod:`xappa.state.convert`.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
   Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = [
    "APPA_ERA5",
    "ERA5_ATTRS",
    "ERA5_LEVELS",
    "ERA5_LEVEL_VARIABLES",
    "ERA5_SURFACE_VARIABLES",
    "StateSpec",
    "era5_spec",
]

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xappa.state.coords import longitude_convention
from xappa.state.units import parse_units

ERA5_SURFACE_VARIABLES = (
    "2m_temperature",
    "10m_u_component_of_wind",
    "10m_v_component_of_wind",
    "mean_sea_level_pressure",
    "sea_surface_temperature",
    "total_precipitation",
)
"""Appa's six surface variables, in channel order (WeatherBench 2 names)."""

ERA5_LEVEL_VARIABLES = (
    "temperature",
    "u_component_of_wind",
    "v_component_of_wind",
    "geopotential",
    "specific_humidity",
)
"""Appa's five pressure-level variables, in channel order (WeatherBench 2 names)."""

ERA5_LEVELS = (50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 400.0, 500.0, 600.0, 700.0, 850.0)
ERA5_LEVELS = (*ERA5_LEVELS, 925.0, 1000.0)
"""Appa's 13 pressure levels in hPa, top of the atmosphere first."""

ERA5_ATTRS: dict[str, dict[str, str]] = {
    "2m_temperature": {"standard_name": "air_temperature", "units": "K"},
    "10m_u_component_of_wind": {"standard_name": "eastward_wind", "units": "m s-1"},
    "10m_v_component_of_wind": {"standard_name": "northward_wind", "units": "m s-1"},
    "mean_sea_level_pressure": {"standard_name": "air_pressure_at_mean_sea_level", "units": "Pa"},
    "sea_surface_temperature": {"standard_name": "sea_surface_temperature", "units": "K"},
    "total_precipitation": {
        "standard_name": "lwe_thickness_of_precipitation_amount",
        "units": "m",
    },
    "temperature": {"standard_name": "air_temperature", "units": "K"},
    "u_component_of_wind": {"standard_name": "eastward_wind", "units": "m s-1"},
    "v_component_of_wind": {"standard_name": "northward_wind", "units": "m s-1"},
    "geopotential": {"standard_name": "geopotential", "units": "m2 s-2"},
    "specific_humidity": {"standard_name": "specific_humidity", "units": "kg kg-1"},
}
"""CF attributes of the ERA5 variables; ``long_name`` is the name with spaces."""
for _name, _attrs in ERA5_ATTRS.items():
    _attrs["long_name"] = _name.replace("_", " ")


@dataclass(frozen=True, kw_only=True)
class StateSpec:
    """Creates the description of a model state: channels, grid, time step and units.

    Channels are the surface variables in order, then each level variable at each level
    (variable-major): ``channel = n_surface + n_levels * v + l``.

    Attributes
    ----------
    surface_variables : tuple of str
        Variables with dimensions ``(time, latitude, longitude)``, in channel order. Any 2-D
        field counts (e.g. a shallow-water geopotential).
    level_variables : tuple of str
        Variables with a vertical dimension too, in channel order.
    levels : tuple of float
        The vertical levels of ``level_variables`` in ``level_units``, in channel order.
    latitudes : tuple of float
        The grid's latitudes in degrees north, strictly monotonic; their order is the spec's.
    longitudes : tuple of float
        The grid's longitudes in degrees east, strictly increasing, all in ``[0, 360)`` or all
        in ``[-180, 180)``; that range is the spec's longitude convention.
    time_step : pandas.Timedelta
        The model time step; strings like ``"1h"`` are parsed.
    units : dict of str to str
        The CF/UDUNITS units of each variable; data in other known units is converted.
    level_units : str
        The units of ``levels``.
    name : str
        A short name for messages and provenance.
    """

    surface_variables: tuple[str, ...] = ()
    level_variables: tuple[str, ...] = ()
    levels: tuple[float, ...] = ()
    latitudes: tuple[float, ...]
    longitudes: tuple[float, ...]
    time_step: pd.Timedelta | str = "1h"
    units: Mapping[str, str] = field(default_factory=dict, hash=False)
    level_units: str = "hPa"
    name: str = "state"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for key in ("surface_variables", "level_variables"):
            value = getattr(self, key)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                msg = f"{key} must be a sequence of variable names; found {type(value).__name__}"
                raise TypeError(msg)
            set_(self, key, tuple(value))
        for key in ("levels", "latitudes", "longitudes"):
            set_(self, key, tuple(float(v) for v in getattr(self, key)))
        set_(self, "time_step", pd.Timedelta(self.time_step))
        set_(self, "units", dict(self.units))
        names = self.variables
        if not names:
            msg = "a StateSpec needs at least one variable; found none"
            raise ValueError(msg)
        if len(set(names)) != len(names):
            msg = f"variable names must be unique; found {list(names)}"
            raise ValueError(msg)
        if bool(self.level_variables) != bool(self.levels):
            msg = (
                "levels must be given exactly when there are level_variables; found"
                f" {len(self.level_variables)} level variables and {len(self.levels)} levels"
            )
            raise ValueError(msg)
        if len(set(self.levels)) != len(self.levels):
            msg = f"levels must be unique; found {list(self.levels)}"
            raise ValueError(msg)
        lat, lon = np.asarray(self.latitudes), np.asarray(self.longitudes)
        if lat.size < 2 or lon.size < 2:
            msg = f"the grid needs at least 2 latitudes and 2 longitudes; found {self.shape}"
            raise ValueError(msg)
        step = np.diff(lat)
        if np.abs(lat).max() > 90 or not (np.all(step > 0) or np.all(step < 0)):
            msg = "latitudes must be strictly monotonic within [-90, 90]"
            raise ValueError(msg)
        if not (np.all(np.diff(lon) > 0) and (lon.min() >= -180 and lon.max() < 360)):
            msg = "longitudes must be strictly increasing within [-180, 360)"
            raise ValueError(msg)
        if lon.min() < 0 and lon.max() >= 180:
            msg = f"longitudes must be all in [0, 360) or all in [-180, 180); found {lon.max():g}"
            raise ValueError(msg)
        if self.time_step <= pd.Timedelta(0):
            msg = f"time_step must be positive; found {self.time_step}"
            raise ValueError(msg)
        unknown = sorted(set(self.units) - set(names))
        if unknown:
            msg = f"units are given for variables not in the spec: {unknown}"
            raise ValueError(msg)
        for variable, units in self.units.items():
            try:
                parse_units(units)
            except ValueError as err:
                msg = f"units of variable {variable!r} must be known units; {err}"
                raise ValueError(msg) from None

    @property
    def variables(self) -> tuple[str, ...]:
        """All variable names: surface first, then level variables."""
        return (*self.surface_variables, *self.level_variables)

    @property
    def channels(self) -> list[tuple[str, float | None]]:
        """The ``(variable, level)`` of each channel, in order; ``level`` is None at the surface."""
        out: list[tuple[str, float | None]] = [(v, None) for v in self.surface_variables]
        out += [(v, lev) for v in self.level_variables for lev in self.levels]
        return out

    @property
    def n_channels(self) -> int:
        """The number of channels ``C``."""
        return len(self.surface_variables) + len(self.level_variables) * len(self.levels)

    @property
    def shape(self) -> tuple[int, int]:
        """The grid shape ``(H, W)``."""
        return len(self.latitudes), len(self.longitudes)

    @property
    def latitude_order(self) -> str:
        """``"descending"`` (north first, as ERA5) or ``"ascending"``."""
        return "descending" if self.latitudes[0] > self.latitudes[-1] else "ascending"

    @property
    def longitude_convention(self) -> str:
        """``"0..360"`` or ``"-180..180"``."""
        return longitude_convention(self.longitudes)

    def channel_index(self, variable: str, level: float | None = None) -> int:
        """Return the channel of ``variable`` (at ``level`` for a level variable).

        Parameters
        ----------
        variable : str
            A variable of the spec.
        level : float, optional
            Its level in ``level_units``; None for a surface variable.

        Returns
        -------
        int
            The channel index in ``[0, C)``.

        Raises
        ------
        KeyError
            If the spec has no such channel.
        """
        if variable in self.surface_variables and level is None:
            return self.surface_variables.index(variable)
        if variable in self.level_variables and level is not None and level in self.levels:
            n = len(self.levels)
            v = self.level_variables.index(variable)
            return len(self.surface_variables) + n * v + self.levels.index(float(level))
        msg = f"spec {self.name!r} has no channel ({variable!r}, {level}); see StateSpec.channels"
        raise KeyError(msg)

    def __repr__(self) -> str:
        lat, lon = self.latitudes, self.longitudes
        return (
            f"StateSpec(name={self.name!r}, channels={self.n_channels},"
            f" surface={list(self.surface_variables)}, levels={list(self.level_variables)}"
            f" x {len(self.levels)}, grid={self.shape[0]}x{self.shape[1]}"
            f" lat {lat[0]:g}..{lat[-1]:g} lon {lon[0]:g}..{lon[-1]:g},"
            f" time_step={self.time_step})"
        )


def era5_spec(
    resolution: float | None = 0.25,
    *,
    nlat: int | None = None,
    nlon: int | None = None,
    surface_variables: Sequence[str] = ERA5_SURFACE_VARIABLES,
    level_variables: Sequence[str] = ERA5_LEVEL_VARIABLES,
    levels: Sequence[float] = ERA5_LEVELS,
    time_step: str | pd.Timedelta = "1h",
) -> StateSpec:
    """Return Appa's ERA5 state spec (71 channels, 1 h) on an equiangular grid with poles.

    Latitudes go from 90 to -90 and longitudes from 0 (east, excluding 360), as WeatherBench 2.

    Parameters
    ----------
    resolution : float, optional
        The grid spacing in degrees (0.25 gives Appa's 721 x 1440 grid). Ignored when ``nlat``
        and ``nlon`` are given.
    nlat, nlon : int, optional
        The grid size, for small test grids.
    surface_variables, level_variables, levels, time_step
        As in :class:`StateSpec`; the defaults are Appa's. ``levels`` is ignored when there
        are no level variables.

    Returns
    -------
    StateSpec
        The spec, with units from :data:`ERA5_ATTRS`.

    Examples
    --------
    >>> spec = era5_spec()
    >>> spec.n_channels, spec.shape, spec.channel_index("geopotential", 500)
    (71, (721, 1440), 52)
    """
    if nlat is None or nlon is None:
        if resolution is None or not 0 < resolution <= 90 or (180 / resolution) % 1:
            msg = f"resolution must divide 180 degrees; found {resolution}"
            raise ValueError(msg)
        nlat, nlon = round(180 / resolution) + 1, round(360 / resolution)
    names = (*surface_variables, *level_variables)
    return StateSpec(
        surface_variables=tuple(surface_variables),
        level_variables=tuple(level_variables),
        levels=tuple(levels) if level_variables else (),
        latitudes=tuple(np.linspace(90.0, -90.0, nlat).tolist()),
        longitudes=tuple((np.arange(nlon) * (360.0 / nlon)).tolist()),
        time_step=time_step,
        units={v: ERA5_ATTRS[v]["units"] for v in names if v in ERA5_ATTRS},
        name="era5",
    )


APPA_ERA5 = era5_spec(0.25)
"""Appa's ERA5 spec: 71 channels on the 0.25 degree 721 x 1440 grid, 1 h step."""

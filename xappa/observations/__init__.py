"""Observations as xarray: validated once, turned into per-time-step operators on the state.

* gridded fields with NaN where unobserved, on the model grid or regridded to it;
* scattered points (CF point or time-series layout), read by bilinear interpolation;
* helpers for realistic networks (stations, low-Earth-orbit swaths) and synthetic data;
* error standard deviations from CF ``ancillary_variables`` or ``obs_error=``.

:func:`prepare_observations` returns an :class:`ObservationSet`: for each model time step a
linear operator on the standardized pixel frame ``(C, H, W)``, standardized values and
variances, and counts for provenance.
"""

from __future__ import annotations

__all__ = [
    "REGRID_METHODS",
    "ObservationSet",
    "StepObservation",
    "leo_swath",
    "orbital_period",
    "prepare_observations",
    "random_stations",
    "sample_gridded",
    "sample_points",
    "stations",
]

from xappa.observations.gridded import REGRID_METHODS
from xappa.observations.networks import leo_swath, orbital_period, random_stations, stations
from xappa.observations.operator import ObservationSet, StepObservation
from xappa.observations.prepare import prepare_observations
from xappa.observations.sampling import sample_gridded, sample_points

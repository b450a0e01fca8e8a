"""The data-assimilation engine: one sampling configuration, the smoother, the filter, forecasts.

Pure torch, over any frame shape, any window denoiser and any observation operators. Every
caller (:func:`xappa.assimilate`, :func:`xappa.forecast`, batch reanalysis, the Lorenz-96
helpers) draws its posteriors through :func:`smooth`, :func:`filter_analyses` or
:func:`forecast_trajectories`, configured by one :class:`SamplingConfig` and seeded by
:func:`generator`.
"""

from xappa.core.da.config import (
    GUIDANCE_NAMES,
    PRECISIONS,
    PRESETS,
    PriorDenoiser,
    SamplingConfig,
    as_config,
)
from xappa.core.da.filter import filter_analyses
from xappa.core.da.forecast import forecast_trajectories
from xappa.core.da.observations import (
    DenseObservations,
    FrameObservations,
    GaussianFrames,
    Joined,
    Shifted,
)
from xappa.core.da.seeds import generator
from xappa.core.da.smoother import smooth

__all__ = [
    "GUIDANCE_NAMES",
    "PRECISIONS",
    "PRESETS",
    "DenseObservations",
    "FrameObservations",
    "GaussianFrames",
    "Joined",
    "PriorDenoiser",
    "SamplingConfig",
    "Shifted",
    "as_config",
    "filter_analyses",
    "forecast_trajectories",
    "generator",
    "smooth",
]

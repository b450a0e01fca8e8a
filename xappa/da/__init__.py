"""Data assimilation with a learned window prior: smoother and filter, plus Lorenz-96 helpers."""

from xappa.da.filter import FilterConfig, filter_ensemble
from xappa.da.sampling import SamplingConfig
from xappa.da.smoother import SmootherConfig, smooth_ensemble

__all__ = [
    "FilterConfig",
    "SamplingConfig",
    "SmootherConfig",
    "filter_ensemble",
    "smooth_ensemble",
]

"""The data-assimilation engine: one sampling configuration, the smoother, the filter, forecasts.

Pure torch: any frame shape, any window denoiser, any observation operators.
"""

from xappa.core.da.config import GUIDANCE_NAMES, PRECISIONS, PRESETS, SamplingConfig, as_config

__all__ = ["GUIDANCE_NAMES", "PRECISIONS", "PRESETS", "SamplingConfig", "as_config"]

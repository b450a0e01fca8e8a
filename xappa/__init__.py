"""xappa: latent score-based data assimilation of the global atmosphere, for xarray users.

xappa brings the method of Appa (Andry, Lewin, Rozet et al., 2025) to xarray: an
autoencoder and a spatio-temporal latent diffusion prior, conditioned on any observations
through guided sampling.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
   Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

__all__ = [
    "Model",
    "SamplingConfig",
    "__version__",
    "assimilate",
    "decode",
    "encode",
    "forecast",
    "get_options",
    "load_model",
    "open_era5",
    "set_options",
]

__version__ = "0.1.0"

from xappa import _moved

_moved.install()  # the old module paths (xappa.metrics, ...), for one release

import xappa.accessor  # noqa: F401  (registers the .appa accessor)
from xappa.assimilation import assimilate
from xappa.core.da import SamplingConfig
from xappa.encoding import decode, encode
from xappa.era5 import open_era5
from xappa.forecasting import forecast
from xappa.models.hub import load_model
from xappa.models.model import Model
from xappa.options import get_options, set_options

"""Training: a generic resumable loop (:mod:`xappa.train.loop`) and diffusion priors."""

from xappa.train.loop import EMA, TrainConfig, TrainResult, load_checkpoint, save_checkpoint, train
from xappa.train.prior import RandomWindows, prior_loss, train_prior

__all__ = [
    "EMA",
    "RandomWindows",
    "TrainConfig",
    "TrainResult",
    "load_checkpoint",
    "prior_loss",
    "save_checkpoint",
    "train",
    "train_prior",
]

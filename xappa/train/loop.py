"""A generic, resumable training loop: AdamW, EMA, clipping, validation and DDP.

The loop knows nothing about the model: it takes a module, a loss ``loss(model, batch) ->
scalar`` and a source of batches. Checkpoints are a ``model.safetensors`` (and
``ema.safetensors``) plus a ``state.pt`` sidecar with the optimizer state, the step, the
losses and the random states, read back with ``torch.load(weights_only=True)``.

When launched by ``torchrun`` with more than one process, the loop joins the process group
(``gloo`` on CPU, ``nccl`` on CUDA), wraps the model in
:class:`~torch.nn.parallel.DistributedDataParallel` and only rank 0 writes checkpoints and
shows progress. Batches must then differ per rank: a batch function receives the step and
can read the rank from :func:`torch.distributed.get_rank` (see
:class:`xappa.train.prior.RandomWindows`).
"""

from __future__ import annotations

__all__ = ["EMA", "TrainConfig", "TrainResult", "load_checkpoint", "save_checkpoint", "train"]

import copy
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from xappa.io.integrity import load_torch_file
from xappa.options import get_options

Batches = Callable[[int], Any] | Iterable[Any]
LossFn = Callable[[nn.Module, Any], Tensor]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Creates a training configuration.

    Attributes
    ----------
    steps : int
        The total number of optimizer steps.
    lr : float
        The peak learning rate of AdamW.
    betas : tuple of float
        AdamW's betas.
    weight_decay : float
        AdamW's decoupled weight decay.
    warmup : int
        Steps of linear warm-up.
    lr_schedule : str
        ``"constant"`` or ``"cosine"`` (decay to 0 at ``steps``).
    grad_clip : float or None
        Clip the global gradient norm to this value.
    ema_decay : float or None
        Keep an exponential moving average of the weights with this decay.
    valid_every : int
        Compute the validation loss every this many steps (0: only at the end).
    checkpoint_every : int
        Save a checkpoint every this many steps (0: only at the end).
    checkpoint_dir : str or None
        Where checkpoints go; ``None`` saves none.
    resume : bool
        Resume from ``checkpoint_dir`` when it holds a checkpoint.
    seed : int
        The seed of the loop's random state (noise, dropout).
    progress : bool or None
        Show a progress bar (``None``: the ``progress`` option).
    device : str or None
        Where to train (``None``: the ``device`` option, else CUDA when available).
    """

    steps: int
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup: int = 0
    lr_schedule: str = "constant"
    grad_clip: float | None = 1.0
    ema_decay: float | None = None
    valid_every: int = 0
    checkpoint_every: int = 0
    checkpoint_dir: str | None = None
    resume: bool = True
    seed: int = 0
    progress: bool | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        checks = {
            "steps": self.steps >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "warmup": self.warmup >= 0,
            "valid_every": self.valid_every >= 0,
            "checkpoint_every": self.checkpoint_every >= 0,
            "grad_clip": self.grad_clip is None or self.grad_clip > 0,
            "ema_decay": self.ema_decay is None or 0 < self.ema_decay < 1,
        }
        for name, ok in checks.items():
            if not ok:
                msg = f"TrainConfig.{name} is out of range; found {getattr(self, name)!r}"
                raise ValueError(msg)
        if self.lr_schedule not in ("constant", "cosine"):
            msg = f"TrainConfig.lr_schedule must be 'constant' or 'cosine'; found {self.lr_schedule!r}"
            raise ValueError(msg)

    def lr_at(self, step: int) -> float:
        """Return the learning rate at ``step`` (0-based)."""
        factor = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        if self.lr_schedule == "cosine":
            factor *= 0.5 * (1 + math.cos(math.pi * min(step, self.steps) / self.steps))
        return self.lr * factor


@dataclass
class TrainResult:
    """Creates the record of a training run.

    Attributes
    ----------
    step : int
        The number of optimizer steps done.
    losses : list of float
        The training loss of every step (this rank's batches).
    valid_losses : dict of int to float
        The validation loss by step.
    seconds : float
        Wall time of this call.
    ema : nn.Module or None
        The averaged model when ``config.ema_decay`` is set.
    """

    step: int = 0
    losses: list[float] = field(default_factory=list)
    valid_losses: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0
    ema: nn.Module | None = None


class EMA:
    r"""Creates an exponential moving average of a model's parameters and buffers.

    :math:`\bar\theta \leftarrow \beta \bar\theta + (1 - \beta) \theta` after every step.

    Parameters
    ----------
    model : nn.Module
        The model to average (not modified).
    decay : float
        The decay :math:`\beta`.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the parameters of ``model``."""
        for avg, new in zip(self.model.parameters(), model.parameters(), strict=True):
            avg.lerp_(new.detach(), 1 - self.decay)
        for avg, new in zip(self.model.buffers(), model.buffers(), strict=True):
            avg.copy_(new)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def save_checkpoint(
    directory: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    ema: EMA | None = None,
    step: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save weights as safetensors and the rest of the training state as a sidecar.

    Parameters
    ----------
    directory : str or path
        The checkpoint directory (created). Files are replaced atomically.
    model : nn.Module
        The model (unwrapped from DDP by the caller).
    optimizer : torch.optim.Optimizer, optional
        Its state goes to ``state.pt``.
    ema : EMA, optional
        Its weights go to ``ema.safetensors``.
    step : int
        The number of steps done.
    extra : dict, optional
        More plain data for the sidecar (losses, ...).

    Returns
    -------
    Path
        The directory.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)

    def _save_model(module: nn.Module, name: str) -> None:
        tmp = path / f".{name}.tmp"
        safetensors.torch.save_model(module, str(tmp))
        tmp.replace(path / name)

    _save_model(model, "model.safetensors")
    if ema is not None:
        _save_model(ema.model, "ema.safetensors")
    state = {
        "step": step,
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "extra": extra or {},
    }
    tmp = path / ".state.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(path / "state.pt")
    return path


def load_checkpoint(
    directory: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    ema: EMA | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` into built modules.

    Parameters
    ----------
    directory : str or path
        The checkpoint directory.
    model : nn.Module
        Receives ``model.safetensors``.
    optimizer : torch.optim.Optimizer, optional
        Receives the optimizer state.
    ema : EMA, optional
        Receives ``ema.safetensors`` (or the model weights when absent).
    restore_rng : bool
        Restore torch's random states.

    Returns
    -------
    dict
        The sidecar: ``step``, ``extra``, ...
    """
    path = Path(directory)
    if not (path / "model.safetensors").is_file():
        msg = f"checkpoint directory {str(path)!r} has no model.safetensors"
        raise FileNotFoundError(msg)
    device = next(iter(model.parameters())).device
    safetensors.torch.load_model(model, str(path / "model.safetensors"), device=str(device))
    if ema is not None:
        src = path / "ema.safetensors"
        src = src if src.is_file() else path / "model.safetensors"
        safetensors.torch.load_model(ema.model, str(src), device=str(device))
    state: dict[str, Any] = {"step": 0, "extra": {}}
    if (path / "state.pt").is_file():
        state = load_torch_file(path / "state.pt", role="training state")
        if optimizer is not None and state.get("optimizer") is not None:
            optimizer.load_state_dict(state["optimizer"])
        if restore_rng:
            torch.set_rng_state(state["torch_rng"])
            if state["cuda_rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state


def _maybe_init_distributed(device: torch.device) -> bool:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def _batches(source: Batches, start: int) -> Iterator[Any]:
    if callable(source):
        step = start
        while True:
            yield source(step)
            step += 1
    else:
        yield from source


@torch.no_grad()
def _validate(model: nn.Module, loss: LossFn, batches: Iterable[Any], seed: int) -> float:
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for batch in batches:
            total += float(loss(model, batch))
            count += 1
    model.train(was_training)
    value = torch.tensor([total, count], dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(value)
    return float(value[0] / value[1].clamp(min=1))


def train(
    model: nn.Module,
    loss: LossFn,
    batches: Batches,
    config: TrainConfig,
    *,
    valid_batches: Iterable[Any] | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a model; resume from and write checkpoints as ``config`` says.

    Parameters
    ----------
    model : nn.Module
        The model, trained in place (on ``config.device``). Under DDP each rank passes the
        same architecture; rank 0's initial weights are broadcast.
    loss : callable
        ``loss(model, batch) -> Tensor`` of shape ``()``. It is called with the DDP-wrapped
        model when distributed.
    batches : callable or iterable
        ``batches(step) -> batch`` (preferred: resumes at the same data) or an iterable of
        batches (restarted from its beginning on resume).
    config : TrainConfig
        The optimizer, schedule, EMA, validation and checkpoint settings.
    valid_batches : iterable, optional
        A re-iterable collection of validation batches; the validation loss is computed with a
        fixed seed, with the EMA weights when kept.
    callback : callable, optional
        Called as ``callback(step, loss)`` after every step, its validation and its
        checkpoint (on every rank).

    Returns
    -------
    TrainResult
        The step reached and the losses.
    """
    start_time = time.perf_counter()
    opts = get_options()
    name = config.device or opts["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    distributed = _maybe_init_distributed(device)
    rank, _ = _world()
    if distributed and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    model.to(device).train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    ema = EMA(model, config.ema_decay) if config.ema_decay else None
    result = TrainResult()
    torch.manual_seed(config.seed + rank)
    ckpt = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    if ckpt is not None and config.resume and (ckpt / "model.safetensors").is_file():
        state = load_checkpoint(ckpt, model, optimizer, ema=ema, restore_rng=rank == 0)
        result.step = int(state["step"])
        result.losses = list(state["extra"].get("losses", []))
        result.valid_losses = {int(k): v for k, v in state["extra"].get("valid", {}).items()}
        if rank:
            torch.manual_seed(config.seed + rank + result.step)
    net: nn.Module = model
    if distributed:
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def checkpoint() -> None:
        if ckpt is not None and rank == 0:
            extra = {"losses": result.losses, "valid": result.valid_losses}
            save_checkpoint(ckpt, model, optimizer, ema=ema, step=result.step, extra=extra)

    def validate() -> None:
        if valid_batches is not None:
            target = ema.model if ema is not None else net
            result.valid_losses[result.step] = _validate(target, loss, valid_batches, config.seed)

    show = (opts["progress"] if config.progress is None else config.progress) and rank == 0
    bar = tqdm(total=config.steps, initial=result.step, disable=not show, desc="train")
    source = _batches(batches, result.step)
    while result.step < config.steps:
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(result.step)
        value = loss(net, next(source))
        if value.ndim != 0:
            msg = f"loss must return a scalar; found shape {tuple(value.shape)}"
            raise ValueError(msg)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        if ema is not None:
            ema.update(model)
        result.step += 1
        result.losses.append(float(value.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{result.losses[-1]:.4f}", refresh=False)
        if config.valid_every and result.step % config.valid_every == 0:
            validate()
        if config.checkpoint_every and result.step % config.checkpoint_every == 0:
            checkpoint()
        if callback is not None:
            callback(result.step, result.losses[-1])
    bar.close()
    if result.step not in result.valid_losses:
        validate()
    checkpoint()
    result.seconds = time.perf_counter() - start_time
    result.ema = None if ema is None else ema.model
    return result

"""``xappa train``: train the autoencoder or the latent prior, and encode data to latents.

``xappa train autoencoder --data STATES.zarr --config tiny --out AE`` trains on an
ERA5-layout or testbed store; ``xappa train encode --autoencoder AE --data STATES.zarr --out
LATENTS.zarr`` encodes it; ``xappa train prior --data LATENTS.zarr --config tiny --out PRIOR``
trains the prior. ``--config`` names a recipe of :data:`RECIPES` or a YAML file with the same
keys (read with ``yaml.safe_load``). Under ``torchrun --nproc_per_node N`` the training
commands run data-parallel and only rank 0 writes.
"""

from __future__ import annotations

__all__ = ["RECIPES", "load_recipe", "register"]

import argparse
import copy
import os
from pathlib import Path
from typing import Any

import yaml

from xappa.commands._args import (
    add_device_argument,
    nonnegative_int,
    positive_float,
    positive_int,
)

#: Named training recipes: the keys a ``--config`` YAML file may hold.
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "autoencoder": {
        "tiny": {
            "model": "tiny",
            "batch_size": 8,
            "valid_fraction": 0.125,
            "valid_batches": 4,
            "precision": "fp32",
            "data": {"load": True},
            "train": {
                "steps": 1000,
                "lr": 3e-3,
                "lr_schedule": "cosine",
                "warmup": 20,
                "valid_every": 100,
                "checkpoint_every": 100,
            },
        },
    },
    "prior": {
        "tiny": {
            "model": "tiny",
            "window": 4,
            "batch_size": 8,
            "noise_level": 0.0,
            "valid_fraction": 0.125,
            "valid_batches": 4,
            "precision": "fp32",
            "data": {"load": True},
            "train": {
                "steps": 1000,
                "lr": 1e-3,
                "ema_decay": 0.999,
                "valid_every": 100,
                "checkpoint_every": 100,
            },
        },
    },
}

_KEYS = {
    "model",
    "loss_weights",
    "batch_size",
    "valid_fraction",
    "valid_batches",
    "precision",
    "data",
    "train",
    "window",
    "noise_level",
    "seed",
}


def load_recipe(kind: str, config: str) -> dict[str, Any]:
    """Return a training recipe: a name of :data:`RECIPES` or a YAML file.

    Parameters
    ----------
    kind : {"autoencoder", "prior"}
        What is trained.
    config : str
        A recipe name, or the path of a YAML file with the keys of a recipe.

    Returns
    -------
    dict
        The recipe (a copy).
    """
    named = RECIPES[kind]
    if config in named:
        return copy.deepcopy(named[config])
    path = Path(config)
    if not path.is_file():
        msg = f"--config must be one of {sorted(named)} or a YAML file; found {config!r}"
        raise ValueError(msg)
    recipe = yaml.safe_load(path.read_text()) or {}
    if not isinstance(recipe, dict):
        msg = f"--config {config!r} must hold a mapping; found {type(recipe).__name__}"
        raise TypeError(msg)
    unknown = sorted(set(recipe) - _KEYS)
    if unknown:
        msg = f"--config {config!r} has unknown keys {unknown}; known: {sorted(_KEYS)}"
        raise ValueError(msg)
    return recipe


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command and its ``autoencoder``, ``prior`` and ``encode``.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The sub-parsers of the ``xappa`` parser.
    """
    parser = subparsers.add_parser(
        "train",
        help="train the autoencoder or the latent prior",
        description="Train the autoencoder or the latent prior, or encode data to latents.",
    )
    kinds = parser.add_subparsers(dest="kind", metavar="WHAT")
    parser.set_defaults(func=lambda args: _help(parser))
    for kind, data_help in (
        ("autoencoder", "ERA5-layout or testbed zarr store"),
        ("prior", "latent zarr store (xappa train encode)"),
    ):
        sub = kinds.add_parser(kind, help=f"train the {kind}", description=_DESCRIPTIONS[kind])
        sub.add_argument("--data", required=True, help=data_help)
        sub.add_argument("--config", default="tiny", help="recipe name or YAML (default tiny)")
        sub.add_argument("--out", required=True, help="run directory (checkpoints)")
        sub.add_argument("--steps", type=positive_int, help="total optimizer steps")
        sub.add_argument("--batch-size", type=positive_int, help="samples per step and process")
        sub.add_argument("--lr", type=positive_float, help="peak learning rate")
        sub.add_argument("--resume", action="store_true", help="continue the run in --out")
        add_device_argument(sub)
        sub.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="autocast")
        sub.add_argument("--seed", type=nonnegative_int, help="random seed (default 0)")
        sub.add_argument("--threads", type=positive_int, help="torch CPU threads per process")
        sub.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        if kind == "autoencoder":
            sub.add_argument("--stats", help="pixel statistics (.zarr/.nc; default: computed)")
        else:
            sub.add_argument("--window", type=positive_int, help="frames per window K")
            sub.add_argument("--ema-decay", type=float, help="EMA decay of the weights")
        sub.set_defaults(func=_run_autoencoder if kind == "autoencoder" else _run_prior)
    enc = kinds.add_parser(
        "encode",
        help="encode a state store to a latent zarr store",
        description=_DESCRIPTIONS["encode"],
    )
    enc.add_argument("--autoencoder", required=True, help="autoencoder run directory")
    enc.add_argument("--data", required=True, help="ERA5-layout or testbed zarr store")
    enc.add_argument("--out", required=True, help="latent zarr store to write")
    enc.add_argument("--chunk", type=positive_int, default=24, help="times per chunk (default 24)")
    enc.add_argument(
        "--batch-size", type=positive_int, default=8, help="frames per pass (default 8)"
    )
    add_device_argument(enc)
    enc.add_argument("--ema", action="store_true", help="use the EMA weights")
    enc.add_argument(
        "--overwrite", action="store_true", help="replace an existing store (one xappa wrote)"
    )
    enc.set_defaults(func=_run_encode)


_DESCRIPTIONS = {
    "autoencoder": (
        "Train the autoencoder on an ERA5-layout or testbed zarr store; checkpoints, the"
        " pixel statistics and autoencoder.yaml go into the run directory --out."
    ),
    "prior": (
        "Train the latent diffusion prior on a latent store written by xappa train encode;"
        " checkpoints and prior.yaml go into the run directory --out."
    ),
    "encode": (
        "Encode a state store with a trained autoencoder into a latent zarr store, the"
        " training data of xappa train prior."
    ),
}


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _open(path: str) -> Any:
    import xarray as xr

    if not Path(path).exists():
        msg = f"--data {path!r} does not exist"
        raise FileNotFoundError(msg)
    return xr.open_zarr(path, consolidated=False)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _settings(args: argparse.Namespace, kind: str) -> tuple[dict[str, Any], Any]:
    """Merge the recipe and the command line; return the recipe and the loop config."""
    import torch

    from xappa.train.loop import TrainConfig

    recipe = load_recipe(kind, args.config)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for key, value in (("batch_size", args.batch_size), ("precision", args.precision)):
        if value is not None:
            recipe[key] = value
    if args.seed is not None:
        recipe["seed"] = args.seed
    train = dict(recipe.get("train", {}))
    for key in ("steps", "lr", "device", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            train[key] = value
    if getattr(args, "ema_decay", None) is not None:
        train["ema_decay"] = args.ema_decay
    out = Path(args.out)
    if (out / "model.safetensors").exists() and not args.resume:
        msg = f"--out {str(out)!r} already holds a checkpoint; pass --resume to continue it"
        raise FileExistsError(msg)
    train.update(checkpoint_dir=str(out), resume=args.resume)
    if args.no_progress:
        train["progress"] = False
    recipe["train"] = train
    return recipe, TrainConfig(**train)


def _model_spec(model: Any, **fields: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(model, str):
        return model, fields
    spec = dict(model)
    return str(spec.pop("name", "tiny")), {**spec, **fields}


def _run_autoencoder(args: argparse.Namespace) -> int:
    """Run ``xappa train autoencoder``."""
    import torch

    from xappa.core.nn.autoencoder import ConvAutoencoder
    from xappa.core.nn.configs import autoencoder_config
    from xappa.state.coords import find_coord
    from xappa.state.stats import read_stats, stats_to_tensors
    from xappa.train.autoencoder import (
        LOSS_WEIGHTS,
        reconstruction_rmse,
        save_autoencoder_files,
        train_autoencoder,
    )
    from xappa.train.data import (
        RandomSnapshots,
        StateData,
        infer_spec,
        split_dataset,
        train_stats,
    )

    recipe, config = _settings(args, "autoencoder")
    loss_weights = recipe.get("loss_weights", "appa")
    if loss_weights not in LOSS_WEIGHTS:  # before any work
        msg = f"--config: loss_weights must be one of {list(LOSS_WEIGHTS)}; found {loss_weights!r}"
        raise ValueError(msg)
    out = Path(args.out)
    ds = _open(args.data)
    data_opts = recipe.get("data", {})
    spec = infer_spec(
        ds,
        variables=data_opts.get("variables"),
        levels=data_opts.get("levels"),
        name=str(data_opts.get("name") or Path(args.data).stem),
    )
    if "train_period" in data_opts or "valid_period" in data_opts:
        time = find_coord(ds, "time")
        periods = [data_opts.get(k, [None, None]) for k in ("train_period", "valid_period")]
        train_ds, valid_ds = (ds.sel({time: slice(*p)}) for p in periods)
    else:
        train_ds, valid_ds = split_dataset(ds, recipe.get("valid_fraction", 0.125))
    if args.stats:
        stats = read_stats(args.stats)
    elif args.resume and (out / "stats.zarr").exists():
        stats = read_stats(out / "stats.zarr")
    else:
        stats = train_stats(train_ds, spec)
    mean, std = stats_to_tensors(stats, spec)
    train_data = StateData(train_ds, spec, mean, std)
    valid_data = StateData(valid_ds, spec, mean, std)
    if data_opts.get("load", False):
        train_data.load()
        valid_data.load()
    name, fields = _model_spec(
        recipe.get("model", "tiny"), in_channels=spec.n_channels, shape=spec.shape
    )
    ae_config = autoencoder_config(name, **fields)
    torch.manual_seed(int(recipe.get("seed", 0)))  # the same initial weights for a seed
    model = ConvAutoencoder.from_config(ae_config)
    if _rank() == 0:
        extra = {"data": str(args.data), "recipe": recipe}
        save_autoencoder_files(out, ae_config, spec, stats, extra=extra)
    batch_size = int(recipe.get("batch_size", 8))
    result = train_autoencoder(
        model,
        train_data,
        config,
        batch_size=batch_size,
        valid_data=valid_data,
        valid_batches=int(recipe.get("valid_batches", 4)),
        precision=recipe.get("precision", "fp32"),
        loss_weights=loss_weights,
        seed=int(recipe.get("seed", 0)),
    )
    if _rank() == 0:
        valid = RandomSnapshots(valid_data, batch_size, seed=-1).fixed(4)
        rmse = reconstruction_rmse(model, valid, train_data.latitudes)
        print(
            f"trained {result.step} steps in {result.seconds:.1f} s; last loss "
            f"{result.losses[-1]:.4g}; validation RMSE {rmse['rmse']:.4f} (standardized)"
        )
    return 0


def _run_prior(args: argparse.Namespace) -> int:
    """Run ``xappa train prior``."""
    import torch

    from xappa.core.nn.configs import vidit_config
    from xappa.core.nn.vidit import ViDiT
    from xappa.train.data import LatentData
    from xappa.train.latent_prior import save_prior_files, train_latent_prior

    recipe, config = _settings(args, "prior")
    if args.window is not None:
        recipe["window"] = args.window
    window = int(recipe.get("window", 4))
    noise = float(recipe.get("noise_level", 0.0))
    data = LatentData(_open(args.data), noise_level=noise)
    train_data, valid_data = data.split(recipe.get("valid_fraction", 0.125))
    if recipe.get("data", {}).get("load", False):
        train_data.load()
        valid_data.load()
    c, h, w = data.frame_shape
    name, fields = _model_spec(
        recipe.get("model", "tiny"), in_channels=c, shape=(h, w), blanket_size=window
    )
    vit_config = vidit_config(name, **fields)
    if _rank() == 0:
        extra = {"data": str(args.data), "window": window, "noise_level": noise, "recipe": recipe}
        save_prior_files(args.out, vit_config, extra=extra)
    torch.manual_seed(int(recipe.get("seed", 0)))  # the same initial weights for a seed
    _, result = train_latent_prior(
        ViDiT(vit_config),
        train_data,
        config,
        window=window,
        batch_size=int(recipe.get("batch_size", 8)),
        valid_data=valid_data,
        valid_batches=int(recipe.get("valid_batches", 4)),
        precision=recipe.get("precision", "fp32"),
        seed=int(recipe.get("seed", 0)),
    )
    if _rank() == 0:
        valid = result.valid_losses.get(result.step, float("nan"))
        print(
            f"trained {result.step} steps in {result.seconds:.1f} s; last loss "
            f"{result.losses[-1]:.4g}; validation loss {valid:.4g}"
        )
    return 0


def _run_encode(args: argparse.Namespace) -> int:
    """Run ``xappa train encode``."""
    from xappa.io.outputs import check_target, mark
    from xappa.train.autoencoder import load_autoencoder
    from xappa.train.data import StateData
    from xappa.train.encode import encode_dataset

    check_target(args.out, role="--out", overwrite=args.overwrite, hint="pass --overwrite")
    model, spec, mean, std = load_autoencoder(args.autoencoder, ema=args.ema)
    data = StateData(_open(args.data), spec, mean, std)
    ds = encode_dataset(
        model,
        data,
        args.out,
        chunk=args.chunk,
        batch_size=args.batch_size,
        device=args.device,
        overwrite=args.overwrite,
        attrs=mark({"autoencoder": str(args.autoencoder), "data": str(args.data)}, "latent store"),
    )
    print(f"wrote {args.out} (latent {dict(ds['latent'].sizes)})")
    return 0

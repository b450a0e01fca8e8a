"""The ``xappa models`` and ``xappa fetch`` sub-commands: list the model cards, fetch a model."""

from __future__ import annotations

__all__ = ["register"]

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` and ``fetch`` sub-commands.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The sub-parsers of the ``xappa`` parser.
    """
    models = subparsers.add_parser(
        "models",
        help="list the models of the hub",
        description="List the model cards: name, kind, whether every file is hash-verified.",
    )
    models.add_argument("-v", "--verbose", action="store_true", help="show each card in full")
    models.set_defaults(func=_run_models)
    fetch = subparsers.add_parser(
        "fetch",
        help="download and verify the files of a model",
        description="Download a model's files into the cache (XAPPA_DATA_DIR) and check them.",
    )
    fetch.add_argument("name", help="the model name (see `xappa models`)")
    fetch.add_argument(
        "--allow-unverified", action="store_true", help="accept files without a known sha256"
    )
    fetch.add_argument(
        "--offline", action="store_true", help="only check the cache; never use the network"
    )
    fetch.set_defaults(func=_run_fetch)


def _run_models(args: argparse.Namespace) -> int:
    from xappa.models.cards import load_cards
    from xappa.models.hub import POOCH

    cards = load_cards()
    print(f"cache: {POOCH.abspath} (set XAPPA_DATA_DIR to change)")
    for name, card in sorted(cards.items()):
        trust = "verified" if card.verified else "UNVERIFIED (needs allow_unverified)"
        print(f"{name}  [{card.kind}, {len(card.files)} files, {trust}]")
        print(f"    {card.description}")
        if args.verbose:
            for key in ("state", "training_data", "training_period", "license", "intended_use"):
                print(f"    {key}: {getattr(card, key)}")
            print(f"    not good for: {card.not_good_for}")
            for key, value in card.architecture.items():
                print(f"    architecture, {key}: {value}")
            for key, value in card.quality.items():
                print(f"    quality, {key}: {value}")
            if not card.quality:
                print("    quality: not measured yet")
            if not card.revision_pinned:
                print(f"    revision: {card.revision} (a placeholder, not a pinned commit)")
            for f in card.files:
                print(f"    file {f.name}: sha256 {f.sha256 or 'unknown'}")
    return 0


def _run_fetch(args: argparse.Namespace) -> int:
    from xappa.models.hub import fetch_model_files

    files = fetch_model_files(
        args.name, offline=args.offline or None, allow_unverified=args.allow_unverified
    )
    for fname, path in files.items():
        print(f"{fname}: {path}")
    return 0

"""Model cards: what each named model is, which files it needs, and how far to trust it.

A card is one entry of the packaged ``xappa/data/cards.yaml``, parsed and validated into a
frozen :class:`ModelCard`. Each of its files has a SHA-256 hash, checked on every download,
or an explicit ``sha256: null`` with ``unverified: true``: such a file is only loaded with
``allow_unverified=True`` (see :func:`xappa.models.hub.load_model`).
"""

from __future__ import annotations

__all__ = ["CardFile", "ModelCard", "load_cards"]

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from xappa.io.integrity import check_name, parse_yaml
from xappa.models.release import CHECKPOINTS

KINDS = ("xappa", "appa-release")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TEXT_FIELDS = (
    "description",
    "state",
    "training_data",
    "training_period",
    "license",
    "citation",
    "intended_use",
    "not_good_for",
)


@dataclass(frozen=True, kw_only=True)
class CardFile:
    """Creates the description of one file of a model.

    Attributes
    ----------
    name : str
        The file name in the registry and in the cache: a relative, ``/``-separated path that
        stays inside the cache (no absolute path, no ``..``; see
        :func:`xappa.io.integrity.check_name`).
    sha256 : str or None
        The SHA-256 hex digest; ``None`` only for an unverified file.
    url : str or None
        The full download URL; ``None`` to use the hub's base URL plus ``name``.
    bundled : bool
        Whether the file ships inside the package (``xappa/data/models/<name>``) instead of
        being downloaded; its hash is still checked against the registry on every load.
    """

    name: str
    sha256: str | None = None
    url: str | None = None
    bundled: bool = False

    def __post_init__(self) -> None:
        check_name(self.name, role="card file name")

    @property
    def verified(self) -> bool:
        """Whether the file has a known hash that every download is checked against."""
        return self.sha256 is not None


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """Creates a validated model card.

    Attributes
    ----------
    name : str
        The model name passed to :func:`xappa.models.hub.load_model`.
    kind : {"xappa", "appa-release"}
        ``"xappa"``: xappa's own layout (a YAML config and a safetensors file, as
        :func:`xappa.models.hub.save_model_files` writes); ``"appa-release"``: files laid out as
        the published Appa release, read by :func:`xappa.models.release.load_appa_release`.
    description : str
        One or two sentences.
    files : tuple of CardFile
        The files to download.
    architecture : Mapping
        The autoencoder and backbone configuration, for reading (the files are authoritative).
    state : str
        The state: variables, levels, grid and time step.
    statistics : str or None
        The file (or store) of the pixel normalization statistics.
    training_data, training_period : str
        What the model was trained on, and when.
    quality : Mapping
        Measured quality (metric name to value or text); empty when not measured.
    license, citation : str
        The licence of the weights, and what to cite.
    intended_use, not_good_for : str
        What the model is for, and what it should not be used for.
    root : str or None
        For ``"appa-release"``: the cache sub-directory holding the release tree (relative,
        inside the cache).
    checkpoint : str
        For ``"appa-release"``: which denoiser checkpoint to read, one of
        :data:`xappa.models.release.CHECKPOINTS` (``"auto"``, ``"last"``, ``"best"``, ``"model"``).
    revision : str or None
        The pinned source revision of the files (e.g. a HuggingFace commit).
    revision_pinned : bool
        Whether ``revision`` is an immutable commit; ``False`` for a placeholder.
    """

    name: str
    kind: str
    description: str
    files: tuple[CardFile, ...]
    architecture: Mapping[str, Any] = field(default_factory=dict)
    state: str = ""
    statistics: str | None = None
    training_data: str = ""
    training_period: str = ""
    quality: Mapping[str, Any] = field(default_factory=dict)
    license: str = ""
    citation: str = ""
    intended_use: str = ""
    not_good_for: str = ""
    root: str | None = None
    checkpoint: str = "auto"
    revision: str | None = None
    revision_pinned: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            msg = f"card {self.name!r} kind must be one of {list(KINDS)}; found {self.kind!r}"
            raise ValueError(msg)
        if not self.files:
            msg = f"card {self.name!r} files must list at least one file; found none"
            raise ValueError(msg)
        if self.checkpoint not in CHECKPOINTS:
            msg = (
                f"card {self.name!r} checkpoint must be one of {list(CHECKPOINTS)}; "
                f"found {self.checkpoint!r}"
            )
            raise ValueError(msg)
        if self.kind == "appa-release" and not self.root:
            msg = f"card {self.name!r} of kind 'appa-release' needs a root; found none"
            raise ValueError(msg)
        if self.root is not None:
            check_name(self.root, role=f"card {self.name!r} root")
        if self.kind == "xappa":
            found = sorted(f.name for f in self.files)
            suffixes = [Path(n).suffix for n in found]
            if suffixes.count(".safetensors") != 1 or suffixes.count(".yaml") != 1:
                msg = (
                    f"card {self.name!r} of kind 'xappa' needs one .yaml and one .safetensors "
                    f"file (and optional others, e.g. a climatology); found {found}"
                )
                raise ValueError(msg)
        object.__setattr__(self, "architecture", MappingProxyType(dict(self.architecture)))
        object.__setattr__(self, "quality", MappingProxyType(dict(self.quality)))

    @property
    def verified(self) -> bool:
        """Whether every file has a known hash."""
        return all(f.verified for f in self.files)

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> ModelCard:
        """Parse and validate one entry of ``cards.yaml``.

        Parameters
        ----------
        name : str
            The model name (the entry's key).
        data : Mapping
            The entry.

        Returns
        -------
        ModelCard
            The card.

        Raises
        ------
        TypeError
            If a field has the wrong type.
        ValueError
            If a field has a bad value, e.g. a file without a hash and without
            ``unverified: true``.
        KeyError
            If a required field is missing.
        """
        if not isinstance(data, Mapping):
            msg = f"card {name!r} must be a mapping; found {type(data).__name__}"
            raise TypeError(msg)
        known = {f for f in cls.__dataclass_fields__ if f != "name"}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"card {name!r} has unknown fields {unknown}; expected some of {sorted(known)}"
            raise ValueError(msg)
        for key in ("kind", "description", "files"):
            if key not in data:
                msg = f"card {name!r} is missing field {key!r}"
                raise KeyError(msg)
        for key in _TEXT_FIELDS:
            if key in data and not isinstance(data[key], str):
                msg = f"card {name!r} field {key!r} must be a string; found {type(data[key]).__name__}"
                raise TypeError(msg)
        for key in ("architecture", "quality"):
            if key in data and not isinstance(data[key] or {}, Mapping):
                msg = f"card {name!r} field {key!r} must be a mapping; found {type(data[key]).__name__}"
                raise TypeError(msg)
        if not isinstance(data["files"], list):
            msg = f"card {name!r} files must be a list; found {type(data['files']).__name__}"
            raise TypeError(msg)
        files = tuple(_parse_file(name, entry) for entry in data["files"])
        names = [f.name for f in files]
        if len(set(names)) != len(names):
            msg = f"card {name!r} lists a file twice; found {names}"
            raise ValueError(msg)
        fields = {k: v for k, v in data.items() if k != "files"}
        for key in ("architecture", "quality"):
            fields[key] = fields.get(key) or {}
        return cls(name=name, files=files, **fields)


def _parse_file(card: str, entry: Any) -> CardFile:
    if not isinstance(entry, Mapping) or "name" not in entry:
        msg = f"card {card!r} files entries must be mappings with a 'name'; found {entry!r}"
        raise TypeError(msg)
    extra = sorted(set(entry) - {"name", "sha256", "unverified", "url", "bundled"})
    if extra:
        msg = f"card {card!r} file {entry['name']!r} has unknown fields {extra}"
        raise ValueError(msg)
    digest, unverified = entry.get("sha256"), entry.get("unverified", False)
    if not isinstance(unverified, bool):
        msg = (
            f"card {card!r} file {entry['name']!r} unverified must be a bool; found {unverified!r}"
        )
        raise TypeError(msg)
    if digest is None and not unverified:
        msg = (
            f"card {card!r} file {entry['name']!r} has sha256: null; expected a SHA-256 hash "
            "or an explicit 'unverified: true'"
        )
        raise ValueError(msg)
    if digest is not None:
        if unverified:
            msg = f"card {card!r} file {entry['name']!r} has a sha256 and unverified: true"
            raise ValueError(msg)
        if not isinstance(digest, str):
            msg = (
                f"card {card!r} file {entry['name']!r} sha256 must be a (quoted) string; "
                f"found {type(digest).__name__}"
            )
            raise TypeError(msg)
        digest = digest.removeprefix("sha256:").lower()
        if not _SHA256.match(digest):
            msg = f"card {card!r} file {entry['name']!r} sha256 must be 64 hex digits; found {digest!r}"
            raise ValueError(msg)
    bundled = entry.get("bundled", False)
    if not isinstance(bundled, bool):
        msg = f"card {card!r} file {entry['name']!r} bundled must be a bool; found {bundled!r}"
        raise TypeError(msg)
    if bundled and (digest is None or entry.get("url") is not None):
        msg = (
            f"card {card!r} file {entry['name']!r} is bundled: it needs a sha256 and no url; "
            f"found sha256={digest!r}, url={entry.get('url')!r}"
        )
        raise ValueError(msg)
    return CardFile(name=str(entry["name"]), sha256=digest, url=entry.get("url"), bundled=bundled)


def load_cards(path: str | Path | None = None) -> dict[str, ModelCard]:
    """Read and validate a cards file.

    Parameters
    ----------
    path : str or Path, optional
        A YAML file mapping ``models`` to name-keyed entries; by default the packaged
        ``xappa/data/cards.yaml``.

    Returns
    -------
    dict of str to ModelCard
        The cards, by name.

    Raises
    ------
    ValueError
        If the file is not valid YAML (the message names it and the parse error), or a card
        is invalid, e.g. a file name that would leave the cache (absolute or with ``..``).
    TypeError
        If the file does not map ``models`` to entries, or a field has the wrong type.
    """
    if path is None:
        source = resources.files("xappa").joinpath("data", "cards.yaml")
    else:
        source = Path(path)
    data = parse_yaml(source.read_text(), source=repr(str(source))) or {}
    models = data.get("models") or {} if isinstance(data, Mapping) else None
    if not isinstance(models, Mapping):
        msg = f"cards file must map 'models' to named entries; found {type(models).__name__}"
        raise TypeError(msg)
    return {str(k): ModelCard.from_dict(str(k), v) for k, v in models.items()}

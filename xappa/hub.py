"""Pretrained weights: for now, loading a local copy of the published Appa release.

A later issue adds the hashed pooch registry; see :mod:`xappa.release` for the layout.
"""

from __future__ import annotations

__all__ = ["load_appa_release"]

from xappa.release import load_appa_release

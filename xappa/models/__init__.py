"""Models and their weights: the :class:`~xappa.models.model.Model`, the hub and file layouts.

:mod:`~xappa.models.model` (networks, statistics and state spec together),
:mod:`~xappa.models.hub` (named models fetched and cached through Pooch),
:mod:`~xappa.models.cards` (the model cards), :mod:`~xappa.models.files` (xappa's own
YAML + safetensors layout), :mod:`~xappa.models.release` (the published Appa checkpoints)
and :mod:`~xappa.models.states` (a model's tensors as labelled Datasets). The layer may
import the state layer, the core, :mod:`xappa.io` and :mod:`xappa.options`, never training.
"""

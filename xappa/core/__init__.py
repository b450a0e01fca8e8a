"""The tensor core of xappa: pure torch, never imports xarray.

Sub-packages: :mod:`xappa.core.nn` (networks), :mod:`xappa.core.diffusion` (schedules,
denoisers, samplers, trajectories) and :mod:`xappa.core.guidance` (posterior guidance).
"""

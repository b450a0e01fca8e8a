"""Verification: align forecasts and truth, score them, check physics, plot and report.

:mod:`~xappa.verify.align`, :mod:`~xappa.verify.metrics`, :mod:`~xappa.verify.spectra`,
:mod:`~xappa.verify.physics`, :mod:`~xappa.verify.plot` and
:mod:`~xappa.verify.evaluate` (one report over many sources, including batch reanalysis
stores).
"""

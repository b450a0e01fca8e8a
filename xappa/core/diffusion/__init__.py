"""Diffusion: noise schedules, preconditioned denoisers, samplers and trajectory composition."""

"""Testbeds with known truth: a shallow-water atmosphere on the sphere and Lorenz-96."""

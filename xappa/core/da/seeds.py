r"""The engine's one seeding scheme: a torch generator per draw, from a seed and a key.

Every random draw of the engine comes from :func:`generator`: the seed and an integer key
(none for a reanalysis window; the cycle index of a filter; the window index of an
autoregressive forecast) go through :class:`numpy.random.SeedSequence`, whose state seeds a
:class:`torch.Generator` on the device of the draw. The same seed and key give the same
stream on the same device, whatever else runs; different keys give independent streams, so
changing one cycle's observations leaves every other cycle's noise unchanged.
"""

from __future__ import annotations

__all__ = ["generator"]

import numpy as np
import torch


def generator(seed: int, *key: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Return a torch generator seeded from ``seed`` and an optional key.

    Parameters
    ----------
    seed : int
        The user's seed (any int; negative values are reduced modulo :math:`2^{63}`).
    *key : int
        Integers naming the draw, e.g. a filter cycle.
    device : torch.device or str
        The device of the generator (the device of the draw).

    Returns
    -------
    torch.Generator
        The seeded generator.

    Raises
    ------
    TypeError
        If ``seed`` or a key is not an int.

    Examples
    --------
    >>> a = torch.randn(2, generator=generator(0, 3))
    >>> b = torch.randn(2, generator=generator(0, 3))
    >>> bool((a == b).all()), bool((a == torch.randn(2, generator=generator(0, 4))).all())
    (True, False)
    """
    for name, value in (("seed", seed), *((f"key {i}", k) for i, k in enumerate(key))):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            msg = f"{name} must be an int; found {type(value).__name__}"
            raise TypeError(msg)
    entropy = [int(seed) % 2**63, *(int(k) % 2**63 for k in key)]
    state = np.random.SeedSequence(entropy).generate_state(2)
    value = (int(state[0]) | (int(state[1]) << 32)) % 2**63
    return torch.Generator(device=torch.device(device)).manual_seed(value)

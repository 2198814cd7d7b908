"""`HostArray`: a numpy array that also answers torch's `.cpu()`, `.detach()` and `.numpy()`.

The calls that carry the official torch names (`predict_torch`, the end-to-end `sam(...)`)
return these, so code written for `segment_anything` (`masks[0].cpu().numpy()`) runs
unchanged. Everything numpy does works on them; `.numpy()` gives a plain `np.ndarray`.
"""

from __future__ import annotations

import numpy as np


class HostArray(np.ndarray):
    """An `np.ndarray` with torch's host-side no-ops."""

    def cpu(self) -> HostArray:
        return self

    def detach(self) -> HostArray:
        return self

    def numpy(self) -> np.ndarray:
        return self.view(np.ndarray)


def host(x) -> HostArray:
    """A jax or numpy array (fetched from its device) as a `HostArray`."""
    return np.asarray(x).view(HostArray)

"""Test helper: move a minutiae set rigidly."""

import numpy as np


def rigid(m: np.ndarray, angle: float, tx: float, ty: float) -> np.ndarray:
    """Rotate (x, y, theta) rows by angle about the origin, then translate."""
    c, s = np.cos(angle), np.sin(angle)
    out = m.copy()
    out[:, 0] = c * m[:, 0] - s * m[:, 1] + tx
    out[:, 1] = s * m[:, 0] + c * m[:, 1] + ty
    out[:, 2] = (m[:, 2] + angle) % (2 * np.pi)
    return out

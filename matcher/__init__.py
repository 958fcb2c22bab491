"""Search backends behind one interface, minutiae re-scoring and fusion.

``matcher`` works on arrays only: identity ids (int64), float32 vectors,
uint8 packed binary codes and minutiae arrays. It imports neither ``synth``
nor ``bench``.
"""

from matcher.interface import Backend, make_backend  # noqa: F401

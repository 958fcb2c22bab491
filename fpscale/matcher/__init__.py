"""Search backends behind one interface, minutiae 1:1 matching, top-k merging.

``matcher`` works on arrays only: identity ids (int64), float32 vectors,
uint8 packed binary codes and minutiae arrays. It imports neither ``synth``
nor ``bench``. ``fpscale.matcher.registry`` builds a backend from its name.
"""

from fpscale.matcher.interface import Backend  # noqa: F401
from fpscale.matcher.registry import make_backend  # noqa: F401

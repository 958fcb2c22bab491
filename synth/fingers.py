"""Master fingers: pattern class, singular points, orientation field, minutiae.

Units: millimetres in a finger frame (x to the right as seen on the print,
y towards the fingertip, origin near the centre of the pad); angles in
radians in [0, 2*pi). At 500 ppi one millimetre is 19.685 pixels
(``PX_PER_MM``).

Model:
- pattern class drawn per finger with the natural frequencies in docs/sources.md
  (SFinGe documentation): arch 3.7%, tented arch 2.9%, left loop 33.8%,
  right loop 31.7%, whorl 27.9%. Fingers are drawn independently (real
  fingers of one person are correlated; fpscale does not model that).
- singular points placed by class (loop: one core and one delta below it,
  on the right for a left loop and the left for a right loop; whorl: two
  cores and two deltas; tented arch: a core just above a delta; plain arch:
  none), and the orientation field from the zero-pole model of Sherlock and
  Monro (1993): theta(z) = theta0 + 1/2 (sum arg(z - delta) - sum arg(z - core)).
  Plain arches use a smooth bump field with no singular point.
- the finger region is an ellipse cut at the distal flexion crease, sized by
  finger position (thumbs largest, little fingers smallest).
- master minutiae: a spatial process with a minimum spacing, density
  ``MINUTIA_DENSITY`` per mm^2, which gives about 110 minutiae on an index
  finger, of which a rolled capture keeps 80-110 (the range docs/sources.md cites); directions
  follow the orientation field (either sense along the ridge, as ridge
  endings and bifurcations point both ways); type ending or bifurcation.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from synth.angles import fast_atan2, wrap_angle
from synth.rng import STREAM_MASTER, categorical, normal, open_stream, uniform

PX_PER_MM = 500.0 / 25.4

PATTERN_CLASSES = ("arch", "tented_arch", "left_loop", "right_loop", "whorl")
PATTERN_FREQUENCIES = np.array([0.037, 0.029, 0.338, 0.317, 0.279])
PATTERN_CDF = np.cumsum(PATTERN_FREQUENCIES) / PATTERN_FREQUENCIES.sum()

ARCH, TENTED_ARCH, LEFT_LOOP, RIGHT_LOOP, WHORL = 0, 1, 2, 3, 4
ENDING, BIFURCATION = 0, 1

# Finger positions 1-10 as in ANSI/NIST-ITL: 1 right thumb, 2 right index,
# ... 5 right little, 6 left thumb, ... 10 left little.
FINGER_NAMES = (
    "right thumb", "right index", "right middle", "right ring", "right little",
    "left thumb", "left index", "left middle", "left ring", "left little",
)
# Semi-axes (mm) of the pad ellipse for thumb, index, middle, ring, little.
_SEMI_X = np.array([11.0, 9.0, 9.3, 8.8, 7.8])
_SEMI_Y = np.array([13.5, 12.0, 12.5, 12.0, 10.5])
CREASE_FRACTION = 0.75  # the region stops 0.75 semi-axis below the centre

MINUTIA_DENSITY = 0.36  # per mm^2 over the pad (about 110 on an index finger)
MIN_SPACING = 0.9       # mm; about two ridge periods
ENDING_SHARE = 0.55     # ridge endings are a little more common than bifurcations
MAX_MASTER = 256        # capacity of a master minutiae buffer


@njit(cache=True)
def finger_semi_axes(finger: int) -> tuple:
    """(semi_x, semi_y) in mm of the pad of finger position 1..10."""
    k = (finger - 1) % 5
    return _SEMI_X[k], _SEMI_Y[k]


@njit(cache=True)
def in_pad(x: float, y: float, ax: float, ay: float) -> bool:
    """True where (x, y) mm lies on the finger pad region."""
    return (x / ax) ** 2 + (y / ay) ** 2 <= 1.0 and y >= -CREASE_FRACTION * ay


@njit(cache=True)
def singular_points(st: np.ndarray, cls: int, sing: np.ndarray) -> tuple:
    """Place cores and deltas for a class.

    Fills ``sing`` (4, 2) mm with cores first, then deltas; returns
    (n_cores, n_deltas, theta0, arch_height, ref_x, ref_y): the reference
    point is the core (loops, tented arches), the midpoint of the two cores
    (whorls) or the top of the ridge bump (plain arches).
    """
    cx = 0.8 * normal(st)
    cy = 1.5 + 1.0 * normal(st)
    theta0 = 0.12 * normal(st)
    arch_h = 0.0
    nc = 0
    nd = 0
    ref_x = cx
    ref_y = cy
    if cls == ARCH:
        arch_h = 2.0 + 2.0 * uniform(st)
        ref_x = 0.0
    elif cls == TENTED_ARCH:
        sing[0, 0] = cx
        sing[0, 1] = cy
        sing[1, 0] = cx + 0.4 * normal(st)
        sing[1, 1] = cy - (2.0 + 2.0 * uniform(st))
        nc = 1
        nd = 1
    elif cls == LEFT_LOOP or cls == RIGHT_LOOP:
        side = 1.0 if cls == LEFT_LOOP else -1.0
        sing[0, 0] = cx
        sing[0, 1] = cy
        sing[1, 0] = cx + side * (4.0 + 3.0 * uniform(st))
        sing[1, 1] = cy - (5.0 + 3.0 * uniform(st))
        nc = 1
        nd = 1
        theta0 += side * 0.15
    else:  # whorl
        half = 0.4 + 1.0 * uniform(st)
        tilt = 0.6 * normal(st)
        sing[0, 0] = cx - half * np.cos(tilt)
        sing[0, 1] = cy - half * np.sin(tilt)
        sing[1, 0] = cx + half * np.cos(tilt)
        sing[1, 1] = cy + half * np.sin(tilt)
        sing[2, 0] = cx - (5.0 + 3.0 * uniform(st))
        sing[2, 1] = cy - (5.0 + 3.0 * uniform(st))
        sing[3, 0] = cx + (5.0 + 3.0 * uniform(st))
        sing[3, 1] = cy - (5.0 + 3.0 * uniform(st))
        nc = 2
        nd = 2
    return nc, nd, theta0, arch_h, ref_x, ref_y


@njit(cache=True)
def orientation(x: float, y: float, sing: np.ndarray, nc: int, nd: int,
                theta0: float, arch_h: float) -> float:
    """Ridge orientation (radians, modulo pi) at (x, y) mm: zero-pole model,
    or a bump field y = h exp(-x^2 / 36) for plain arches."""
    if nc == 0 and nd == 0:
        w2 = 36.0
        slope = -2.0 * arch_h * x / w2 * np.exp(-x * x / w2) * np.exp(-max(y, 0.0) / 12.0)
        return theta0 + np.arctan(slope)
    t = theta0
    for i in range(nc):
        t -= 0.5 * fast_atan2(y - sing[i, 1], x - sing[i, 0])
    for i in range(nd):
        t += 0.5 * fast_atan2(y - sing[nc + i, 1], x - sing[nc + i, 0])
    return t


@njit(cache=True)
def _near_in_slots(grid: np.ndarray, out: np.ndarray, cx: int, cy: int,
                   x: float, y: float, min2: float) -> bool:
    # the second and later minutiae of the 3 x 3 cells around (cx, cy)
    gy, gx = grid.shape[0], grid.shape[1]
    for yy in range(max(cy - 1, 0), min(cy + 2, gy)):
        for xx in range(max(cx - 1, 0), min(cx + 2, gx)):
            for k in range(1, 4):
                j = grid[yy, xx, k]
                if j < 0:
                    break
                dx = out[j, 0] - x
                dy = out[j, 1] - y
                if dx * dx + dy * dy < min2:
                    return True
    return False


@njit(cache=True)
def master_finger(seed: int, identity: int, finger: int, out: np.ndarray,
                  ref: np.ndarray) -> tuple:
    """Generate the master minutiae of one finger.

    out: (MAX_MASTER, 4) float64 buffer filled with rows (x_mm, y_mm,
    theta_rad, type); ref: (3,) filled with the reference point and axis
    (x_mm, y_mm, angle_rad: the pattern's axis towards the fingertip), which
    an extractor would report as the core (ANSI/NIST-ITL Type-9 records carry
    cores and deltas beside the minutiae). Returns (n_minutiae,
    pattern_class). A pure function of (seed, identity, finger).
    """
    st = open_stream(seed, identity, finger, -1, STREAM_MASTER)
    cls = categorical(st, PATTERN_CDF)
    sing = np.zeros((4, 2))
    nc, nd, theta0, arch_h, ref_x, ref_y = singular_points(st, cls, sing)
    ref[0] = ref_x
    ref[1] = ref_y
    ref[2] = theta0 + 0.5 * np.pi
    ax, ay = finger_semi_axes(finger)
    # per-finger size and density variation (skin, age, build)
    scale = 1.0 + 0.06 * normal(st)
    ax *= scale
    ay *= scale
    area = np.pi * ax * ay * 0.87  # ellipse minus the part below the crease
    target = int(area * MINUTIA_DENSITY * np.exp(0.12 * normal(st)))
    target = min(max(target, 20), out.shape[0])
    n = 0
    tries = 0
    min2 = MIN_SPACING * MIN_SPACING
    # spacing checks look only at the 3 x 3 neighbouring cells of a grid
    # with MIN_SPACING cells (at most 4 minutiae fit in one). Most cells
    # hold at most one minutia, so the first one's coordinates are kept in a
    # grid padded by one cell (far away when empty) and checked without
    # branches; only cells holding more (`crowded`) are checked through the
    # index grid. Both give exactly the plain test "no earlier minutia
    # within MIN_SPACING"; the branch-free part is about 20% faster.
    gx = int(2.0 * ax / MIN_SPACING) + 1
    gy = int(2.0 * ay / MIN_SPACING) + 1
    grid = np.full((gy, gx, 4), -1, dtype=np.int16)
    first = np.full((gy + 2, gx + 2, 2), 1e9)
    crowded = np.zeros((gy + 2, gx + 2), dtype=np.bool_)
    while n < target and tries < 20 * target:
        tries += 1
        x = (2.0 * uniform(st) - 1.0) * ax
        y = (2.0 * uniform(st) - 1.0) * ay
        if not in_pad(x, y, ax, ay):
            continue
        cx_ = min(int((x + ax) / MIN_SPACING), gx - 1)
        cy_ = min(int((y + ay) / MIN_SPACING), gy - 1)
        near = 0
        more = False
        for yy in range(cy_, cy_ + 3):  # padded indices: the 3 x 3 block
            for xx in range(cx_, cx_ + 3):
                dx = first[yy, xx, 0] - x
                dy = first[yy, xx, 1] - y
                near += dx * dx + dy * dy < min2
                more |= crowded[yy, xx]
        if near:
            continue
        if more and _near_in_slots(grid, out, cx_, cy_, x, y, min2):
            continue
        slot = 0
        while slot < 4 and grid[cy_, cx_, slot] >= 0:
            slot += 1
        if slot == 4:
            continue
        if slot == 0:
            first[cy_ + 1, cx_ + 1, 0] = x
            first[cy_ + 1, cx_ + 1, 1] = y
        else:
            crowded[cy_ + 1, cx_ + 1] = True
        th = orientation(x, y, sing, nc, nd, theta0, arch_h)
        if uniform(st) < 0.5:
            th += np.pi
        out[n, 0] = x
        out[n, 1] = y
        out[n, 2] = wrap_angle(th)
        out[n, 3] = ENDING if uniform(st) < ENDING_SHARE else BIFURCATION
        grid[cy_, cx_, slot] = n
        n += 1
    return n, cls


@njit(cache=True)
def pattern_class(seed: int, identity: int, finger: int) -> int:
    """The pattern class (index into PATTERN_CLASSES) of one finger."""
    st = open_stream(seed, identity, finger, -1, STREAM_MASTER)
    return categorical(st, PATTERN_CDF)

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
- master minutiae: a hard-core point process with a minimum spacing
  (sequential inhibition over a grid of 1 mm cells, ``_cell_positions``),
  density ``MINUTIA_DENSITY`` per mm^2, which gives about 110 minutiae on an
  index finger, of which a rolled capture keeps 80-110 (the range
  docs/sources.md cites); directions follow the orientation field (either
  sense along the ridge, as ridge endings and bifurcations point both
  ways); type ending or bifurcation.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fpscale.synth.angles import fast_atan2, wrap_angle
from fpscale.synth.rng import (_GOLDEN, STREAM_MASTER, _mix, categorical, normal, open_stream, skip,
                               u64_ahead, uniform)

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
CELL = 1.0              # mm; side of the cells of the master point process (>= MIN_SPACING)
# mean density of the master process against the presence probability of
# a candidate in a cell (``cell_presence``, ``cell_density``)
_PRESENCE = np.linspace(0.15, 1.0, 18)
_DENSITY = np.array([0.14301, 0.18425, 0.22237, 0.25783, 0.29098, 0.32232, 0.35122, 0.37825,
                     0.40372, 0.42757, 0.45011, 0.47127, 0.49135, 0.50982, 0.52722, 0.54368,
                     0.55921, 0.57385])
_TABLE_SEED = 0x7AB1E
_INV21 = 1.0 / 2097152.0  # 2**-21
_FAR = 1e9               # mm; where an empty cell's minutia lies
# ENDING_SHARE * 2^53, an integer (the share's float has 53 significant bits)
_ENDING_CUT = np.uint64(int(ENDING_SHARE * 2.0 ** 53))


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
def cell_presence(density: float) -> float:
    """Probability that a cell of the master grid holds a candidate, for a
    mean of ``density`` minutiae per mm^2 of 0.87 pi ax ay (the pad's area
    as fpscale has always counted it: the ellipse less a rough share below
    the crease). The accepted density is a concave function of the presence
    (more candidates, more of them too close to a kept neighbour);
    ``_PRESENCE`` and ``_DENSITY`` tabulate it, as ``cell_density``
    measures it, and this interpolates the inverse."""
    return np.interp(density, _DENSITY, _PRESENCE)


@njit(cache=True)
def cell_density(presence: float, n_fingers: int) -> float:
    """Mean density (per mm^2 of 0.87 pi ax ay) of ``_cell_positions`` with
    the given presence, over n_fingers fingers of every position with the
    size variation of ``master_finger``, from a fixed stream. The table
    ``_DENSITY`` is ``cell_density(p, 4000)`` at each ``_PRESENCE``; a test
    recomputes it."""
    total = 0.0
    area = 0.0
    for i in range(n_fingers):
        finger = 1 + i % 10
        st = open_stream(_TABLE_SEED, i, finger, -1, STREAM_MASTER)
        ax, ay = finger_semi_axes(finger)
        scale = 1.0 + 0.06 * normal(st)
        ax *= scale
        ay *= scale
        gx = int(2.0 * ax / CELL) + 1
        gy = int((1.0 + CREASE_FRACTION) * ay / CELL) + 1
        xs = np.empty(gx * gy + 1)
        ys = np.empty(gx * gy + 1)
        total += _cell_positions(st, ax, ay, gx, gy, presence, xs, ys)
        area += 0.87 * np.pi * ax * ay
    return total / area


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

    Positions come from a hard-core process on a grid of CELL x CELL mm
    cells (``_cell_positions``); directions follow the orientation field,
    in either sense (ridge endings and bifurcations point both ways).
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
    presence = cell_presence(MINUTIA_DENSITY * np.exp(0.12 * normal(st)))
    gx = int(2.0 * ax / CELL) + 1
    gy = int((1.0 + CREASE_FRACTION) * ay / CELL) + 1
    work = np.empty((3, gx * gy + 1))
    xs = work[0]
    ys = work[1]
    th = work[2]
    n = _cell_positions(st, ax, ay, gx, gy, presence, xs, ys)
    skip(st, gx * gy)
    n = min(n, out.shape[0])
    # the orientation field (as ``orientation``, summed in the same order),
    # one singular point at a time over all minutiae: loops without branches
    for i in range(n):
        th[i] = theta0
    if nc == 0 and nd == 0:
        for i in range(n):
            th[i] = orientation(xs[i], ys[i], sing, 0, 0, theta0, arch_h)
    for k in range(nc + nd):
        w = -0.5 if k < nc else 0.5
        sx = sing[k, 0]
        sy = sing[k, 1]
        for i in range(n):
            th[i] += w * fast_atan2(ys[i] - sy, xs[i] - sx)
    for i in range(n):
        z = u64_ahead(st, i + 1)
        out[i, 0] = xs[i]
        out[i, 1] = ys[i]
        out[i, 2] = wrap_angle(th[i] + np.pi * float(np.int32(z & np.uint64(1))))
        # u < ENDING_SHARE for the uniform u = (z >> 11) 2^-53, compared
        # as integers (exactly the same test): a 53-bit integer's conversion
        # to float keeps the loop from SIMD code
        out[i, 3] = ENDING if (z >> np.uint64(11)) < _ENDING_CUT else BIFURCATION
    skip(st, n)
    return n, cls


@njit(cache=True)
def _cell_positions(st: np.ndarray, ax: float, ay: float, gx: int, gy: int,
                    presence: float, xs: np.ndarray, ys: np.ndarray) -> int:
    """Minutia positions on the pad of semi-axes (ax, ay) into xs, ys (at
    least gx * gy + 1 long); returns their number.

    The pad is covered by gx x gy cells of CELL mm, from (-ax, -CREASE_FRACTION
    ay). Each cell (row r, column c) takes the draw u64_ahead(st, r gx + c + 1)
    (the stream is not advanced): a candidate with probability ``presence``
    (the top 22 bits), placed uniformly in the cell (21 bits each for x and
    y). Cells are visited row by row from the crease up, and in each row the
    even columns, then the odd ones; a candidate is kept when it lies on the
    pad and no minutia kept before lies within MIN_SPACING. As CELL >=
    MIN_SPACING, only kept minutiae of the neighbouring cells can be that
    close: the three cells below and, for odd columns, the two beside. So
    no cell's test waits for its neighbour in the same pass, and the loops
    run without branches. This is sequential inhibition (random sequential
    adsorption) with the visiting order standing for the order of arrival;
    one draw per cell of the pad replaces dart throwing's sequence of about
    250 darts, each with a data-dependent test. Kept minutiae are written
    in row order, then column order. Against dart throwing at the same
    density (index fingers, 600 each), nearest-neighbour distances have the
    same 1st, 50th and 90th percentiles within 1% (0.90, 1.16, 1.59 mm) and
    the mean number of neighbours within 1, 2, 3 and 5 mm agrees within 4%.

    Two passes, for speed: first every cell's draw, position and tests of
    presence and of lying on the pad (rows of independent cells, which
    compile to SIMD code; a cell that fails them holds no candidate), then
    the spacing test of the candidates in the visiting order. A spacing
    test needs only whether each distance reaches MIN_SPACING, so the
    comparisons are joined without branches (their outcomes are random).
    """
    p_cut = np.uint64(int(presence * 4194304.0))  # 2^22
    mask21 = np.uint64(0x1FFFFF)
    min2 = MIN_SPACING * MIN_SPACING
    inv_ax = 1.0 / ax
    inv_ay = 1.0 / ay
    x_low = -ax
    y_low = -CREASE_FRACTION * ay
    s0 = st[0]
    cx = np.empty(gx * gy)
    cy = np.empty(gx * gy)
    for r in range(gy):
        y0 = y_low + r * CELL
        base = r * gx
        for c in range(gx):
            z = _mix(s0 + np.uint64(base + c + 1) * _GOLDEN)
            # 21-bit fields through int32, which AVX2 converts to float four
            # lanes at a time (int64 one at a time): the same values
            x = x_low + (c + float(np.int32(z & mask21)) * _INV21) * CELL
            y = y0 + float(np.int32((z >> np.uint64(21)) & mask21)) * _INV21 * CELL
            xe = x * inv_ax
            ye = y * inv_ay
            cand = (((z >> np.uint64(42)) < p_cut)
                    & (xe * xe + ye * ye <= 1.0) & (y >= y_low))
            cx[base + c] = x if cand else _FAR
            cy[base + c] = y
    # kept minutiae of the row below and of this row, one per cell, padded
    # by one cell each side; an empty cell lies far away
    rows = np.full((4, gx + 2), _FAR)
    below = 0
    n = 0
    for r in range(gy):
        here = 2 - below
        bx = rows[below]
        by = rows[below + 1]
        hx = rows[here]
        hy = rows[here + 1]
        hx[:] = _FAR
        hy[:] = _FAR
        y0 = y_low + r * CELL
        # only the columns that can reach the pad in this row
        yn = min(abs(y0), abs(y0 + CELL)) if y0 * (y0 + CELL) > 0.0 else 0.0
        half = ax * np.sqrt(max(1.0 - (yn * inv_ay) ** 2, 0.0))
        c0 = max(int((-half - x_low) / CELL), 0)
        c1 = min(int((half - x_low) / CELL), gx - 1)
        base = r * gx
        for parity in range(2):
            for c in range(c0 + ((c0 + parity) & 1), c1 + 1, 2):
                x = cx[base + c]
                y = cy[base + c]
                # no kept neighbour within MIN_SPACING
                keep = ((x < 0.5 * _FAR)
                        & ((bx[c] - x) ** 2 + (by[c] - y) ** 2 >= min2)
                        & ((bx[c + 1] - x) ** 2 + (by[c + 1] - y) ** 2 >= min2)
                        & ((bx[c + 2] - x) ** 2 + (by[c + 2] - y) ** 2 >= min2)
                        & ((hx[c] - x) ** 2 + (hy[c] - y) ** 2 >= min2)
                        & ((hx[c + 2] - x) ** 2 + (hy[c + 2] - y) ** 2 >= min2))
                hx[c + 1] = x if keep else _FAR
                hy[c + 1] = y if keep else _FAR
        for c in range(c0, c1 + 1):
            xs[n] = hx[c + 1]
            ys[n] = hy[c + 1]
            n += hx[c + 1] < 0.5 * _FAR
        below = here
    return n


@njit(cache=True)
def pattern_class(seed: int, identity: int, finger: int) -> int:
    """The pattern class (index into PATTERN_CLASSES) of one finger."""
    st = open_stream(seed, identity, finger, -1, STREAM_MASTER)
    return categorical(st, PATTERN_CDF)

"""LLVM vector operations for numba intrinsics, where numba's code falls short.

numba compiles with LLVM's loop vectoriser only (its straight-line "SLP"
vectoriser is off), and the loop vectoriser cannot compact a stream (keep
the elements that pass a test, in order) nor cover a few eight-lane blocks
without a scalar remainder, and the order of a sum it vectorises (with
numba's fastmath "reassoc") is the compiler's choice, which differs between
CPUs (AVX2 and AVX-512 targets add the same products in different orders).
The intrinsics that need either build their LLVM IR from these helpers:
plain IEEE operations on vectors, in an order written here, so that every
lane computes the same bits on every CPU.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils

LANES = 8
F64 = ir.DoubleType()
F32 = ir.FloatType()
I64 = ir.IntType(64)
I32 = ir.IntType(32)
VEC = ir.VectorType(F64, LANES)
VEC32 = ir.VectorType(F32, LANES)
IVEC = ir.VectorType(I64, LANES)


def splat(builder: ir.IRBuilder, x: ir.Value, vt: ir.VectorType = VEC) -> ir.Value:
    """Every lane of a vector of type vt set to the scalar x."""
    undef = ir.Constant(vt, ir.Undefined)
    one = builder.insert_element(undef, x, ir.Constant(I32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(I32, LANES), [0] * LANES))


def element_pointer(context, builder: ir.IRBuilder, aryty, ary: ir.Value,
                    *index: ir.Value | int) -> ir.Value:
    """Pointer to an element of an array (indexes non-negative).
    The vector loads and stores read on from there, so callers pass arrays
    whose last axis is contiguous (their intrinsics type-check for it)."""
    arr = context.make_array(aryty)(context, builder, ary)
    index = [ir.Constant(I64, i) if isinstance(i, int) else i for i in index]
    return cgutils.get_item_pointer(context, builder, aryty, arr, index, wraparound=False)


def load(builder: ir.IRBuilder, ptr: ir.Value) -> ir.Value:
    """LANES float64 from ptr on (unaligned)."""
    return builder.load(builder.bitcast(ptr, VEC.as_pointer()), align=8)


def store(builder: ir.IRBuilder, value: ir.Value, ptr: ir.Value) -> None:
    """LANES float64 to ptr on (unaligned)."""
    builder.store(value, builder.bitcast(ptr, VEC.as_pointer()), align=8)


def store_kept(builder: ir.IRBuilder, values: list, ptrs: list, first: ir.Value,
               mask: ir.Value) -> ir.Value:
    """Store the lanes of each vector in values whose mask bit is set, in
    order, from position first on (a stream compaction): lane l goes to
    its pointer function ptrs[v](position) at first plus the number of kept
    lanes before l, kept or not, so that no branch depends on the mask (a
    lane that is not kept is overwritten by the next one, and those after
    the last kept lane land past the kept ones, where callers keep scratch
    room). Returns first plus the number of kept lanes.

    Scalar stores, not ``llvm.experimental.vector.compress``: that is one
    instruction with AVX-512, but LLVM expands it lane by lane through
    memory elsewhere, which made the pair search a third slower than a
    scalar loop on an AVX2 host; these stores are as fast or faster on
    both, and one code path is tested on every CPU."""
    bits = builder.zext(builder.bitcast(mask, ir.IntType(LANES)), I64)
    pos = first
    for lane in range(LANES):
        at = ir.Constant(I32, lane)
        for value, ptr in zip(values, ptrs):
            builder.store(builder.extract_element(value, at), ptr(pos))
        bit = builder.and_(builder.lshr(bits, ir.Constant(I64, lane)), ir.Constant(I64, 1))
        pos = builder.add(pos, bit)
    return pos


def lanes_below(builder: ir.IRBuilder, first: ir.Value, stop: ir.Value) -> ir.Value:
    """Mask of the lanes first + l (l = 0..LANES-1) that are below stop."""
    lane = builder.add(splat(builder, first, IVEC), ir.Constant(IVEC, list(range(LANES))))
    return builder.icmp_signed("<", lane, splat(builder, stop, IVEC))


def load32(builder: ir.IRBuilder, ptr: ir.Value) -> ir.Value:
    """LANES float32 from ptr on (unaligned)."""
    return builder.load(builder.bitcast(ptr, VEC32.as_pointer()), align=4)


def fma(builder: ir.IRBuilder, a: ir.Value, b: ir.Value, c: ir.Value) -> ir.Value:
    """a * b + c rounded once (llvm.fma: one instruction where the CPU has
    FMA, an exact library call where it has not), lane by lane for vectors."""
    t = a.type
    vector = isinstance(t, ir.VectorType)
    scalar = "f32" if (t.element if vector else t) == F32 else "f64"
    name = f"llvm.fma.v{t.count}{scalar}" if vector else f"llvm.fma.{scalar}"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(t, [t, t, t]), name)
    return builder.call(fn, [a, b, c])


def halves_sum(builder: ir.IRBuilder, v: ir.Value) -> ir.Value:
    """Sum of a vector's lanes, always in one order: the upper half added
    to the lower half lane by lane until one lane is left."""
    n = v.type.count
    while n > 1:
        h = n // 2
        lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, h), list(range(h))))
        hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, h), list(range(h, n))))
        v = builder.fadd(lo, hi)
        n = h
    return builder.extract_element(v, ir.Constant(I32, 0))

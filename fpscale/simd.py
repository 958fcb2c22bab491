"""LLVM vector operations for numba intrinsics, where numba's code falls short.

numba compiles with LLVM's loop vectoriser only (its straight-line "SLP"
vectoriser is off), and the loop vectoriser cannot compact a stream (keep
the elements that pass a test, in order) nor cover a few eight-lane blocks
without a scalar remainder, and the order of a sum it vectorises (with
numba's fastmath "reassoc") is the compiler's choice, which differs between
CPUs (AVX2 and AVX-512 targets add the same products in different orders).
The intrinsics that need either build their LLVM IR from these helpers:
plain IEEE operations on vectors, in an order written here, so that every
lane computes the same bits on every CPU. ``llvm.experimental.
vector.compress`` is one instruction (vcompresspd) with AVX-512 and a short
generic sequence elsewhere; the results are the same on every CPU.
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
MASK = ir.VectorType(ir.IntType(1), LANES)


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


def compress(builder: ir.IRBuilder, value: ir.Value, mask: ir.Value) -> ir.Value:
    """The lanes of value whose mask bit is set, moved to the front in
    order (the lanes after them undefined)."""
    fnty = ir.FunctionType(VEC, [VEC, MASK, VEC])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.experimental.vector.compress.v8f64")
    return builder.call(fn, [value, mask, ir.Constant(VEC, ir.Undefined)])


def count(builder: ir.IRBuilder, mask: ir.Value) -> ir.Value:
    """Number of set lanes of a mask, as int64."""
    bits = builder.zext(builder.bitcast(mask, ir.IntType(LANES)), I64)
    return builder.call(builder.module.declare_intrinsic("llvm.ctpop", [I64]), [bits])


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

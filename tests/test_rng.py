import numpy as np

from fpscale.synth.rng import (categorical, key_state, next_u64, open_stream, poisson, skip,
                       u64_ahead, uniform)

MASK = (1 << 64) - 1


def _mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def test_splitmix64_matches_plain_python_reference():
    # the published SplitMix64 output for state 0 after one step
    st = np.zeros(1, dtype=np.uint64)
    out = [int(next_u64(st)) for _ in range(3)]
    ref, z = [], 0
    for _ in range(3):
        z = (z + 0x9E3779B97F4A7C15) & MASK
        ref.append(_mix(z))
    assert out == ref
    assert ref[0] == 0xE220A8397B1DCDAF  # first SplitMix64 output from seed 0


def test_keys_give_independent_streams():
    a = key_state(1, 2, 3, 4, 5)
    assert a == key_state(1, 2, 3, 4, 5)
    others = {key_state(1, 2, 3, 4, 6), key_state(1, 2, 3, 5, 5), key_state(1, 2, 4, 4, 5),
              key_state(1, 3, 3, 4, 5), key_state(2, 2, 3, 4, 5), key_state(1, 2, 3, -1, 5)}
    assert a not in others and len(others) == 6


def test_uniform_poisson_categorical_distributions():
    st = open_stream(7, 0, 0, 0, 1)
    u = np.array([uniform(st) for _ in range(20000)])
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    p = np.array([poisson(st, 4.0) for _ in range(20000)])
    assert abs(p.mean() - 4.0) < 0.08 and abs(p.var() - 4.0) < 0.25
    cdf = np.array([0.2, 0.5, 1.0])
    c = np.bincount([categorical(st, cdf) for _ in range(20000)], minlength=3) / 20000
    assert np.allclose(c, [0.2, 0.3, 0.5], atol=0.015)


def test_draws_ahead_and_skips_are_those_of_the_sequence():
    st = open_stream(3, 1, 2, -1, 1)
    ahead = [int(u64_ahead(st, k)) for k in (1, 2, 3, 7)]
    s2 = st.copy()
    seq = [int(next_u64(s2)) for _ in range(7)]
    assert ahead == [seq[0], seq[1], seq[2], seq[6]]
    skip(st, 5)
    assert int(next_u64(st)) == seq[5]

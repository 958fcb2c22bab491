"""The learned projection of the candidate vectors (fpscale/synth/lda_basis.py) and
what it is for: plain flats of one finger that overlap only in part must
still score well above unrelated fingers (docs/encoding.md)."""

import numpy as np
import pytest

import fpscale.synth.lda_basis as lda
from fpscale.synth import embedding
from fpscale.synth.embedding import encode, shipped_basis
from fpscale.synth.features import N_FEATURES, feature_batch
from fpscale.synth.impressions import PLAIN


def _numpy_scatter(n):
    # plain-numpy reference of lda.scatter: every feature at once, the
    # missing reference parts filled with the mean of the found ones
    keys_a, keys_b, noise = lda.reference_keys(n)
    nan = np.full(N_FEATURES, np.nan)

    def feats(keys, fill):
        out = np.empty((n, N_FEATURES))
        for t in range(n):
            out[t] = feature_batch(keys[0], *(k[t:t + 1] for k in keys[1:]), fill, noise[t])[0]
        return out

    raw = np.vstack([feats(keys_a, nan), feats(keys_b, nan)])
    fill = np.nanmean(raw, axis=0)
    a, b = feats(keys_a, fill), feats(keys_b, fill)
    x = np.vstack([a, b])
    mean = x.mean(0)
    st = (x - mean).T @ (x - mean) / len(x)
    sw = (a - b).T @ (a - b) / (2 * n)
    return mean, st, sw


def test_chunked_scatter_matches_numpy_reference(monkeypatch):
    monkeypatch.setattr(lda, "CHUNK", 70)  # several chunks, the last one short
    n = 250
    mean, st, sw = lda.scatter(n)
    m2, st2, sw2 = _numpy_scatter(n)
    assert np.allclose(mean, m2, atol=1e-12)
    assert np.allclose(st, st2, atol=1e-10)
    assert np.allclose(sw, sw2, atol=1e-10)


def test_reference_population_mixes_plain_pairs_and_noise():
    keys_a, keys_b, noise = lda.reference_keys(600)
    plain_pairs = (keys_a[4] == PLAIN) & (keys_b[4] == PLAIN)
    assert plain_pairs[::2].all() and 0.4 < plain_pairs.mean() < 0.8
    assert sorted(set(noise)) == sorted(lda.REFERENCE_NOISE)
    assert (keys_a[1] == keys_b[1]).all() and (keys_a[3] != keys_b[3]).all()


def test_shipped_file_records_how_it_was_learned():
    with np.load(embedding._DATA) as z:
        assert int(z["n_reference"]) == lda.N_REFERENCE
        assert int(z["n_features"]) == N_FEATURES
        lam = z["eigenvalues"]
    assert lam.shape == (lda.KEEP,) and np.all(np.diff(lam) <= 0) and lam[-1] > 1.0
    mean, basis = shipped_basis()
    assert basis.shape == (N_FEATURES, lda.KEEP) and mean.shape == (N_FEATURES,)


@pytest.mark.slow
def test_shipped_projection_is_what_the_code_learns():
    # the whole reference population (about a minute on two cores)
    mean, basis = shipped_basis()
    m2, b2, lam = lda.learn()
    assert np.allclose(mean, m2, atol=1e-6)
    cos = np.abs((basis * b2).sum(0)) / (np.linalg.norm(basis, axis=0) * np.linalg.norm(b2, axis=0))
    assert cos[:16].min() > 0.999
    assert np.allclose(np.linalg.norm(basis, axis=0), np.linalg.norm(b2, axis=0), rtol=1e-4)


@pytest.mark.slow
def test_shipped_quality_weights_are_what_the_code_learns():
    # the whole reference population on the shipped basis (about 40 s)
    mean, basis = shipped_basis()
    w = lda.quality_weights(mean, basis)
    assert np.allclose(embedding.quality_weights(256)[1:], w, atol=1e-6)


# Measured (docs/encoding.md): one index finger, plain against plain at
# quality 4 with the best-2012 extraction noise, 2,000 fingers: d' 3.31-3.36
# and 26-29% of mates below the impostor 0.999 quantile with the shipped
# basis; the basis learned from 8,000 reference fingers gave d' 2.80-2.84
# and 43-44%.
@pytest.mark.parametrize("finger", [2, 7])
def test_partial_overlap_plain_flats_stay_apart_from_impostors(finger):
    n = 2000
    ids = np.arange(n)
    a, _, _ = encode(11, ids, finger, 1, PLAIN, 4, dim=256, bits=64, noise=0.5355)
    b, _, _ = encode(11, ids, finger, 2, PLAIN, 4, dim=256, bits=64, noise=0.5355)
    gen = (a * b).sum(1)
    imp = (a @ b.T)[~np.eye(n, dtype=bool)]
    d_prime = (gen.mean() - imp.mean()) / np.sqrt((gen.var() + imp.var()) / 2)
    fnir = (gen < np.quantile(imp, 1 - 1e-3)).mean()
    assert d_prime >= 3.15
    assert fnir <= 0.32


def test_candidate_recall_tool_counts_mates_above_the_list_length(capsys):
    from fpscale.bench.tools.candidate_recall import candidate_recall, main, mate_ranks, spec_for
    spec = spec_for("frif-class-a", "best-2012", 3000, 200)
    assert spec.mated_share == 1.0 and spec.dim == 256 and spec.extraction_noise == 0.5355
    ranks = mate_ranks(spec, chunk=1000)
    wide = ranks.recall(100)
    one = candidate_recall(spec, k=1, chunk=3000)
    assert wide.searches == 200 and 0.95 <= wide.rate <= 1.0
    assert one.listed == one.rank1 == wide.rank1 and one.listed < wide.listed
    assert wide.low <= wide.rate <= wide.high
    # one pass serves every list length: the listed share only grows with k
    listed = [ranks.recall(k).listed for k in (1, 5, 20, 100, 3000)]
    assert listed == sorted(listed) and listed[-1] == 200
    assert listed[2] == int((ranks.above < 20).sum())
    with pytest.raises(ValueError, match="mated"):
        candidate_recall(spec_for("frif-class-a", "best-2012", 3000, 50,
                                  ("population.mated_share=0.5",)))
    capsys.readouterr()
    assert main(["frif-class-a", "--gallery-size", "1000", "--searches", "20", "-k", "1", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "top 1 " in lines[0] and "top 10 " in lines[1]
    # a setting the profile owns is refused in one line, not a traceback
    assert main(["frif-class-a", "--gallery-size", "1000", "--set", "population.capture_noise=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("candidate_recall: ") and "capture_noise" in err and "\n" not in err


def test_misses_are_counted_by_how_much_of_the_finger_a_search_shares(capsys):
    from fpscale.bench.tools.candidate_recall import MateRanks, main, overlap_lines, spec_for
    from fpscale.bench.tools.population_facts import search_overlap, shared_share
    from fpscale.synth.population import legacy_records, submission_impressions, submission_truth
    # a mixed population: non-mated searches have no overlap; a legacy
    # record holds only the index fingers, so only they are averaged
    spec = spec_for("frif-class-c", None, 400, 120, ("population.mated_share=0.5",
                                                     "population.legacy_share=0.5"))
    ov = search_overlap(spec, 120)
    _, mate = submission_truth(spec, 0, 120)
    assert np.isnan(ov[mate < 0]).all() and np.isfinite(ov[mate >= 0]).all()
    sub = submission_impressions(spec, 0, 120)
    old = np.flatnonzero(legacy_records(spec, np.arange(400)))
    r = np.flatnonzero((mate >= 0) & np.isin(mate, old))[0]
    t = np.flatnonzero((sub.row == r) & np.isin(sub.finger, [2, 7]))
    want = shared_share(spec, sub.identity[t], sub.finger[t], sub.encounter[t], np.full(len(t), 2))
    assert ov[r] == pytest.approx(want.mean())
    # at capture noise 0 the same capture type holds the same minutiae
    same = spec_for("frif-class-a", "none", 300, 40, ("population.capture_noise=0.0",))
    assert (search_overlap(same, 40) == 1.0).all()
    # binned counts: each search in one bin, 1.0 in the last
    ranks = MateRanks(10, np.array([0, 500, 3, 200, 150]), 0.0, 0.0)
    lines = overlap_lines(ranks, np.array([0.1, 0.55, 0.65, 0.95, 1.0]), 100)
    assert len(lines) == 3 and "2 searches, 1 outside the top 100" in lines[0]
    assert "1 searches, 0 outside" in lines[1] and "0.9-1.0" in lines[2] and "2 searches, 2 outside" in lines[2]
    capsys.readouterr()
    assert main(["frif-class-a", "--gallery-size", "500", "--searches", "20", "-k", "5",
                 "--by-overlap"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "top 5 " in out[0] and sum(int(x.split()[6].replace(",", "")) for x in out[1:]) == 20


def test_misses_are_counted_by_the_quality_of_the_best_booking_finger(capsys):
    from fpscale.bench.tools.candidate_recall import MateRanks, main, quality_lines
    ranks = MateRanks(10, np.array([0, 500, 3, 200, 150, 99]), 0.0, 0.0)
    lines = quality_lines(ranks, np.array([1, 1, 3, 5, 5, 5]), 100)
    assert len(lines) == 3  # a line for each quality present, none for 2 and 4
    assert "quality 1: 2 searches, 1 outside the top 100, 0.5000" in lines[0]
    assert "quality 3: 1 searches, 0 outside" in lines[1]
    assert "quality 5: 3 searches, 2 outside the top 100, 0.6667" in lines[2]
    capsys.readouterr()
    assert main(["frif-class-a", "--gallery-size", "500", "--searches", "30", "-k", "5",
                 "--by-quality"]) == 0
    out = capsys.readouterr().out.splitlines()
    groups = [x for x in out[1:] if "best booking finger" in x]
    assert sum(int(x.split(": ")[1].split()[0]) for x in groups) == 30
    assert sum(int(x.split(", ")[1].split()[0]) for x in groups) == int(out[0].split("(")[1].split()[0])


def test_each_finger_ranks_the_mate_by_that_finger_alone_as_numpy_does(capsys):
    from fpscale.bench.tools.candidate_recall import finger_lines, main, mate_ranks, spec_for
    from fpscale.synth.population import gallery_chunk, submission_chunk, submission_truth
    spec = spec_for("frif-class-a", "best-2012", 2000, 120)
    ranks = mate_ranks(spec, chunk=700, each_finger=True)
    assert ranks.finger_above.shape == (2, 120)
    assert np.array_equal(ranks.above, mate_ranks(spec, chunk=2000).above)  # the record's ranks unchanged
    g = gallery_chunk(spec, 0, spec.gallery_size).vectors.astype(np.float64)
    p = submission_chunk(spec, 0, spec.n_submissions).vectors.astype(np.float64)
    _, mate = submission_truth(spec, 0, spec.n_submissions)
    d, rows = spec.dim, np.arange(len(mate))
    for f in range(2):
        s = p[:, f * d:(f + 1) * d] @ g[:, f * d:(f + 1) * d].T
        ms = s[rows, mate].copy()
        s[rows, mate] = -np.inf
        # float32 sums against float64: a record within rounding of the mate
        # may fall either side, so the counts agree to a record or two
        assert np.abs((s > ms[:, None]).sum(1) - ranks.finger_above[f]).max() <= 2
    # one finger alone ranks the mate worse than both together, on the whole
    assert ranks.finger_above.sum(1).min() > ranks.above.sum()
    lines = finger_lines(ranks, (2, 7), 5)
    merged = np.minimum(ranks.above, ranks.finger_above.min(0))
    assert "finger 2 alone: 120 searches, " + f"{int((ranks.finger_above[0] >= 5).sum())} outside" in lines[0]
    assert "finger 7 alone" in lines[1] and f"{int((merged >= 5).sum())} outside the top 5" in lines[2]
    assert int((merged >= 5).sum()) <= int((ranks.above >= 5).sum())
    capsys.readouterr()
    assert main(["frif-class-a", "--gallery-size", "500", "--searches", "20", "-k", "5",
                 "--each-finger"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and "merged" in out[3]
    assert main(["scomm-130m", "--gallery-size", "500", "--codes", "--each-finger"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("candidate_recall: ") and "\n" not in err


def test_candidate_recall_on_codes_ranks_as_numpy_does():
    from fpscale.bench.tools.candidate_recall import candidate_recall, spec_for
    from fpscale.synth.population import gallery_chunk, submission_chunk, submission_truth
    spec = spec_for("scomm-130m", None, 3000, 150)
    assert spec.code == "itq" and spec.bits == 256
    got = [candidate_recall(spec, k=k, chunk=700, codes=True) for k in (1, 20)]
    g = gallery_chunk(spec, 0, spec.gallery_size).codes
    p = submission_chunk(spec, 0, spec.n_submissions).codes
    _, mate = submission_truth(spec, 0, spec.n_submissions)
    s = (g.shape[1] * 8 - np.bitwise_count(p[:, None, :] ^ g[None, :, :]).sum(2)).astype(np.int64)
    ms = s[np.arange(len(mate)), mate]
    s[np.arange(len(mate)), mate] = -1
    above = (s > ms[:, None]).sum(1)
    for r, k in zip(got, (1, 20)):
        assert r.listed == int((above < k).sum()) and r.rank1 == int((above == 0).sum())
    assert got[0].listed < got[1].listed


def test_codes_without_vectors_are_the_same_codes():
    # a codes-only run leaves the (n x dim) vectors out, not the codes
    from fpscale.synth.embedding import encode
    ids = np.arange(300, dtype=np.int64)
    v, c, k = encode(3, ids, 2, 0, np.arange(300) % 4, 1 + np.arange(300) % 5, 32, 128,
                     code="simhash")
    v0, c0, k0 = encode(3, ids, 2, 0, np.arange(300) % 4, 1 + np.arange(300) % 5, 32, 128,
                        code="simhash", vectors=False)
    assert v0.shape == (300, 0) and v.shape == (300, 32)
    assert np.array_equal(c, c0) and np.array_equal(k, k0)


def _sequential_bits(v, w):
    # plain Python: bit r is the sign of the float64 sum over k, in
    # increasing k, of w[k, r] * v[k] (no fused multiply-add)
    out = np.zeros(w.shape[1], dtype=bool)
    for r in range(w.shape[1]):
        s = 0.0
        for k in range(w.shape[0]):
            s += float(w[k, r]) * float(v[k])
        out[r] = s > 0.0
    return np.packbits(out, bitorder="little")


@pytest.mark.parametrize("dim, bits, code", [(64, 128, "simhash"), (256, 256, "itq")])
def test_screened_code_bits_are_those_of_the_float64_sums(dim, bits, code):
    # the encoder takes a bit's sign from a float32 sum (any order) unless
    # that sum lies within its error bound of 0, and from the float64 sum
    # then: the bits must be the float64 sums' signs, including vectors
    # built to put a sum at 0 (orthogonal to a column of the code matrix)
    w = embedding.projections(dim, bits, code)[2]
    screen = embedding.sign_screen(dim, bits, code)
    rng = np.random.default_rng(dim)
    x = rng.standard_normal((300, dim))
    near = np.arange(120)
    for i in near:
        c = w[:, i % bits]
        x[i] -= (x[i] @ c) / (c @ c) * c
    v32s, acc = np.empty(dim, np.float32), np.empty(bits, np.float32)
    out_v = np.empty(dim, np.float32)
    fell_back = 0
    for i, xi in enumerate(x.astype(np.float32)):
        v = embedding._normalised(xi, out_v)
        want = np.empty(bits // 8, np.uint8)
        embedding._signs(v, w, want)
        got = np.empty(bits // 8, np.uint8)
        embedding._screened_signs(v, w, screen, v32s, acc, got)
        assert np.array_equal(got, want), i
        embedding._screen_sums(v.astype(np.float32), screen[0], acc)
        fell_back += int((np.abs(acc) <= screen[1]).sum())
        if i < 6 or i in (near[0], near[1]):
            assert np.array_equal(want, _sequential_bits(v, w)), i
    assert fell_back >= len(near)  # the float64 path decided those bits
    # the same bits from the encoder's batches: the float32 sums of 13
    # vectors at a time in tiles (the 13th past the last whole tile)
    acc13 = np.empty((embedding.PROJECT_BATCH, bits), np.float32)
    for a in range(0, len(x), 13):
        vs = np.array([embedding._normalised(xi, out_v) for xi in x[a:a + 13].astype(np.float32)])
        embedding._project_rows(vs.astype(np.float32), len(vs), screen[2:], acc13)
        for b, v in enumerate(vs):
            want = np.empty(bits // 8, np.uint8)
            embedding._signs(v, w, want)
            got = np.empty(bits // 8, np.uint8)
            embedding._settled_signs(v, w, screen[1], acc13[b], got)
            assert np.array_equal(got, want), a + b
    # the bound covers the float32 sums' distance from the float64 ones
    v = x / np.linalg.norm(x, axis=1, keepdims=True)
    err = np.abs(v.astype(np.float32) @ screen[0].T - v @ w).max(axis=0)
    assert (err <= screen[1]).all() and screen[1].max() < 1e-3


def _sequential_projection(xs, proj):
    # plain numpy: for each row, the float32 sum over h, in increasing h,
    # of xs[h] * proj[h], skipping the zero xs[h] (as the encoder always did)
    out = np.zeros((len(xs), proj.shape[1]), np.float32)
    for b, x in enumerate(xs):
        for h in np.flatnonzero(x):
            out[b] = out[b] + x[h] * proj[h]
    return out


@pytest.mark.parametrize("nf,nb", [(N_FEATURES, 16), (N_FEATURES, 7), (21, 16)])
def test_projection_is_the_sequential_float32_sum(nf, nb):
    # the encoder sums tiles of rows and columns in registers, the rest
    # one basis row at a time, and adds zeros without a branch: its float32
    # sums must be, bit for bit, the one-row-at-a-time sums that skip
    # zeros, on real centred features with zeros among them, and on a
    # basis of 40 columns (two whole strips and 8 columns more) and rows
    # whose count is not a multiple of eight; 7 rows leave 3 past the
    # last whole tile
    mean, proj = embedding.projections(256, 256, "itq")[:2]
    n = 20
    ids = np.arange(n, dtype=np.int64)
    two = np.full(n, 2, np.int64)
    feat = feature_batch(5, ids, two, np.zeros(n, np.int64), ids % 4, 1 + ids % 5, mean)
    xs = (feat - mean).astype(np.float32)
    xs[:, ::7] = 0.0
    assert (xs == 0).any(axis=1).all() and (xs != 0).any(axis=1).all()
    if nf != N_FEATURES:
        proj = np.random.default_rng(nf).standard_normal((nf, 40)).astype(np.float32)
        xs = np.ascontiguousarray(xs[:, :nf])
    got = np.full((embedding.PROJECT_BATCH, proj.shape[1]), np.nan, np.float32)
    proj = np.ascontiguousarray(proj)
    embedding._project_rows(xs, nb, (proj, embedding.strips(proj)), got)
    want = _sequential_projection(xs[:nb], proj)
    assert np.array_equal(got[:nb].view(np.uint32), want.view(np.uint32))


def test_quality_weights_match_a_numpy_reference(monkeypatch):
    # lda.quality_weights over several chunks against every impression at
    # once: sqrt(mean product of a finger's two impressions at quality q) /
    # (mean square at q), each row scaled to a largest weight of 1
    monkeypatch.setattr(lda, "CHUNK", 90)
    n = 400
    mean, basis = shipped_basis()
    got = lda.quality_weights(mean, basis[:, :24], n)
    keys_a, keys_b, noise = lda.reference_keys(n)

    def vecs(keys):
        f = np.vstack([feature_batch(keys[0], *(k[t:t + 1] for k in keys[1:]), mean, noise[t])
                       for t in range(n)])
        return (f - mean) @ basis[:, :24].astype(np.float64)

    a, b = vecs(keys_a), vecs(keys_b)
    for q in range(1, 6):
        power = np.vstack([a[keys_a[5] == q], b[keys_b[5] == q]])
        both = (keys_a[5] == q) & (keys_b[5] == q)
        u = np.sqrt(np.maximum((a[both] * b[both]).mean(0), 0)) / (power ** 2).mean(0)
        assert np.allclose(got[q - 1], u / u.max(), rtol=1e-9, atol=1e-12), q


def test_shipped_quality_weights_favour_the_leading_directions_at_poor_quality():
    w = embedding.quality_weights(256)
    assert w.shape == (6, 256) and w.dtype == np.float32 and (w[0] == 1).all()
    assert ((w[1:] >= 0) & (w[1:] <= 1)).all() and np.allclose(w[1:].max(1), 1)
    # how much the trailing half counts against the leading 16 directions
    # falls from quality 1 to 5 (measured 1.21, 1.04, 0.87, 0.68, 0.55)
    ratio = w[1:, 128:].mean(1) / w[1:, :16].mean(1)
    assert (np.diff(ratio) < 0).all() and ratio[0] > 1.1 and ratio[4] < 0.65
    assert np.array_equal(embedding.quality_weights(64, False), np.ones((6, 64), np.float32))


def test_weighted_vectors_are_the_weighted_projection_and_their_codes_its_signs():
    n = 40
    ids = np.arange(n, dtype=np.int64)
    q = 1 + ids % 5
    caps = ids % 3
    v, c, _ = encode(9, ids, 7, 1, caps, q, 64, 128, noise=0.7, quality_weighting=True)
    v0, c0, _ = encode(9, ids, 7, 1, caps, q, 64, 128, noise=0.7)
    mean, proj, w = embedding.projections(64, 128)
    feat = feature_batch(9, ids, np.full(n, 7), np.ones(n, np.int64), caps, q, mean, 0.7)
    raw = _sequential_projection((feat - mean).astype(np.float32), proj)
    for got, weights in ((v, embedding.quality_weights(64)), (v0, None)):
        want = raw * (weights[q] if weights is not None else 1)
        want /= np.linalg.norm(want, axis=1, keepdims=True)
        assert np.allclose(got, want, atol=2e-6)
    assert not np.allclose(v, v0, atol=1e-3)
    for i in range(n):
        bits = np.empty(16, np.uint8)
        embedding._signs(v[i], w, bits)
        assert np.array_equal(bits, c[i]), i


# Measured (docs/encoding.md): two index fingers, plain bookings at quality
# 5 (or 4) on both fingers against 2,000 plain records of mixed quality at
# best-2012's extraction and capture noise; the share of searches whose
# mate is not at rank 1 falls from 0.054 to 0.0375 (quality 5) and from
# 0.0185 to 0.008 (quality 4) with the weighting (seed 12: 0.0485 to 0.030,
# 0.019 to 0.010).
@pytest.mark.parametrize("quality, most", [(5, 0.8), (4, 0.6)])
def test_quality_weighting_ranks_poor_bookings_mates_higher(quality, most):
    n = 2000
    ids = np.arange(n)

    def records(encounter, q, weighting):
        return np.hstack([encode(11, ids, f, encounter, PLAIN, q, dim=256, bits=64, noise=0.5355,
                                 capture_noise=0.2329, quality_weighting=weighting)[0]
                          for f in (2, 7)])

    missed = []
    for weighting in (False, True):
        s = records(1, quality, weighting) @ records(0, 1 + (ids * 7) % 5, weighting).T
        missed.append(((s > np.diag(s)[:, None]).sum(1) > 0).mean())
    assert missed[1] <= most * missed[0] and missed[0] > 0.005

"""Single-finger 1:1 accuracy and speed of the minutiae matchers.

Compares the paired-minutiae count of ``fpscale.matcher.minutiae`` with the MCC
score of ``fpscale.matcher.mcc`` on the same synthetic impressions
(``fpscale.synth.impressions.impression_batch``): genuine pairs (one finger, two
encounters) against impostor pairs (the same finger position of different
people). Reports FNMR at a fixed FMR with 95% intervals, the share of
impostor comparisons of an independent set that reach each threshold, the old
matcher's P(paired >= 12), comparisons per second, and a look at what the
genuine pairs have in common (ground truth from the capture model).

    python -m fpscale.bench.tools.matcher_eval accuracy --probe plain --gallery rolled --quality mix
    python -m fpscale.bench.tools.matcher_eval truth --probe plain --gallery rolled --quality 2
    python -m fpscale.bench.tools.matcher_eval speed
    python -m fpscale.bench.tools.matcher_eval failures --scores pr_mix.npz --quality mix
    python -m fpscale.bench.tools.matcher_eval cross --scores pr_mix.npz pp_mix.npz

Run with NUMBA_NUM_THREADS=1 for per-core speed. Identities: genuine pairs
use 0 .. n_genuine - 1; impostor pairs take probes and gallery entries from
that pool with a different identity; an independent impostor set (probes
from identities 10^6 ...) checks the thresholds.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from fpscale.bench.profile import ProfileError, read_profile
from fpscale.matcher import mcc, minutiae
from fpscale.synth.fingers import MAX_MASTER, master_finger
from fpscale.synth.impressions import MAX_IMPRESSION, capture_index, impression_batch, impression_from_master
from fpscale.synth.population import PopulationSpec, capture_qualities, spec_from_dict

HELD_OUT_BASE = 1_000_000


@dataclass(frozen=True)
class Protocol:
    """What is compared: one finger position of each identity, captured as
    probe (encounter 1) and as gallery entry (encounter 0), at quality
    "1".."5" on both sides or "mix" (the population's shares)."""

    seed: int = 0
    finger: int = 2
    probe: str = "plain"
    gallery: str = "rolled"
    quality: str = "mix"


@dataclass(frozen=True)
class Sample:
    """How many comparisons: genuine pairs, impostor pairs drawn among
    them, and impostor pairs of an independent set that checks the
    thresholds."""

    genuine: int = 5000
    impostor: int = 100_000
    held_out: int = 50_000


def qualities(spec: PopulationSpec, ids: np.ndarray, protocol: Protocol, gallery: bool) -> np.ndarray:
    """Quality per impression of one side (gallery or probe): a fixed level
    "1".."5", or "mix": spec's shares (gallery or booking), drawn as the
    population does (with its within-person correlation)."""
    if protocol.quality != "mix":
        return np.full(len(ids), int(protocol.quality), dtype=np.int64)
    n = len(ids)
    return capture_qualities(spec, ids, np.full(n, protocol.finger), np.full(n, 0 if gallery else 1),
                             gallery)


def templates(spec: PopulationSpec, ids: np.ndarray, protocol: Protocol,
              gallery: bool) -> tuple[np.ndarray, np.ndarray]:
    """Padded minutiae and counts of one side's capture of each identity,
    at spec's seed and extraction and capture noise."""
    q = qualities(spec, ids, protocol, gallery)
    n = len(ids)
    capture = protocol.gallery if gallery else protocol.probe
    return impression_batch(spec.seed, ids, np.full(n, protocol.finger), np.full(n, 0 if gallery else 1),
                            np.full(n, capture_index(capture)), q, float(spec.extraction_noise),
                            float(spec.capture_noise))


def threshold_at(imp: np.ndarray, fmr: float) -> float:
    """Smallest threshold T (a score value) with P(imp >= T) <= fmr; a
    comparison is a match when its score is >= T."""
    s = np.sort(imp)
    allowed = int(np.floor(fmr * len(s)))  # impostor scores that may reach T
    # T just above the (allowed + 1)-th largest score
    top = s[len(s) - allowed - 1]
    above = s[s > top]
    return float(above.min()) if len(above) else float(np.nextafter(top, np.inf))


def fnmr_at(gen: np.ndarray, imp: np.ndarray, fmr: float) -> tuple[float, float]:
    t = threshold_at(imp, fmr)
    return t, float(np.mean(gen < t))


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from scipy.stats import beta
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def bootstrap_fnmr(gen: np.ndarray, imp: np.ndarray, fmr: float, rounds: int = 300,
                   seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of FNMR at FMR fmr, resampling genuine and
    impostor scores (so the threshold's own uncertainty is included)."""
    rng = np.random.default_rng(seed)
    out = np.empty(rounds)
    for r in range(rounds):
        g = gen[rng.integers(0, len(gen), len(gen))]
        i = imp[rng.integers(0, len(imp), len(imp))]
        out[r] = fnmr_at(g, i, fmr)[1]
    return float(np.percentile(out, 2.5)), float(np.percentile(out, 97.5))


def _pairs(seed: int, n_pool: int, n_probe: int, per_probe: int) -> tuple[np.ndarray, np.ndarray]:
    # impostor pairs: probe p (of n_probe) against per_probe gallery entries
    # of the pool, never its own identity
    rng = np.random.default_rng(seed)
    ia = np.repeat(np.arange(n_probe), per_probe)
    ib = rng.integers(0, n_pool - 1, len(ia))
    ib = ib + (ib >= ia)  # skip the probe's own identity
    return ia, ib


def _timed(fn, *args) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def accuracy(protocol: Protocol = Protocol(), sample: Sample = Sample(), fmr: float = 1e-4,
             rounds: int = 300, pop: PopulationSpec | None = None) -> dict:
    """Genuine and impostor scores of both matchers on one protocol, FNMR at
    FMR with intervals (rounds: bootstrap replicates), and the thresholds
    checked on an independent impostor set. pop: extraction noise, quality
    shares and correlation (a profile's; fpscale's defaults when None); the
    seed is the protocol's."""
    seed, n_genuine, n_impostor = protocol.seed, sample.genuine, sample.impostor
    spec = replace(pop or PopulationSpec(), seed=seed)
    ids = np.arange(n_genuine, dtype=np.int64)
    gt, gn = templates(spec, ids, protocol, gallery=True)
    pt, pn = templates(spec, ids, protocol, gallery=False)
    per = max(1, n_impostor // n_genuine)
    ia, ib = _pairs(seed + 1, n_genuine, min(n_genuine, -(-n_impostor // per)), per)
    ia, ib = ia[:n_impostor], ib[:n_impostor]
    hid = HELD_OUT_BASE + np.arange(sample.held_out // 10, dtype=np.int64)
    ht, hn = templates(spec, hid, protocol, gallery=False)
    ha = np.repeat(np.arange(len(hid)), 10)
    hb = np.random.default_rng(seed + 2).integers(0, n_genuine, len(ha))
    out = {**asdict(protocol), "fmr": fmr, "extraction_noise": spec.extraction_noise,
           "capture_noise": spec.capture_noise, "quality_correlation": spec.quality_correlation,
           "genuine": int(n_genuine), "impostor": int(len(ia)),
           "held_out_impostor": int(len(ha)),
           "minutiae_probe_mean": float(pn.mean()), "minutiae_gallery_mean": float(gn.mean())}
    for name, fn in (("old", minutiae.match_many), ("mcc", mcc.match_many)):
        fn(pt, pn, gt, gn, ids[:2], ids[:2])  # compile or load
        gen, tg = _timed(fn, pt, pn, gt, gn, ids, ids)
        imp, ti = _timed(fn, pt, pn, gt, gn, ia, ib)
        held = fn(ht, hn, gt, gn, ha, hb)
        gen = np.asarray(gen, dtype=np.float64)
        imp = np.asarray(imp, dtype=np.float64)
        held = np.asarray(held, dtype=np.float64)
        t, f = fnmr_at(gen, imp, fmr)
        k = int(np.sum(gen < t))
        r = {"threshold": t, "fnmr": f, "fnmr_ci95_given_threshold": clopper_pearson(k, len(gen)),
             "fnmr_ci95_bootstrap": bootstrap_fnmr(gen, imp, fmr, rounds),
             "fmr_at_threshold": float(np.mean(imp >= t)),
             "held_out_fmr": float(np.mean(held >= t)),
             "held_out_fmr_ci95": clopper_pearson(int(np.sum(held >= t)), len(held)),
             "genuine_median": float(np.median(gen)), "impostor_median": float(np.median(imp)),
             "impostor_max": float(imp.max()), "genuine_min": float(gen.min()),
             "fnmr_at_zero_fmr": float(np.mean(gen <= imp.max())),
             "seconds_impostor": ti, "comparisons_per_s": len(ia) / ti}
        if name == "old":
            r["p_paired_ge_12_impostor"] = float(np.mean(imp >= 12))
            r["p_paired_ge_12_genuine"] = float(np.mean(gen >= 12))
        out[name] = r
        out[name + "_scores"] = {"genuine": gen, "impostor": imp}
    return out


def _encoded_master(seed: int, identity: int, finger: int) -> tuple:
    # the master with each minutia's index in the type column (index + 10.5;
    # a capture's type flip turns it into -index - 9.5): the capture draws
    # the same random numbers whatever the type, so the geometry is
    # unchanged and every captured minutia names its master minutia
    master = np.empty((MAX_MASTER, 4))
    ref = np.empty(3)
    n, cls = master_finger(seed, identity, finger, master, ref)
    master[:n, 3] = np.arange(n) + 10.5
    return master, n, ref, cls


def _capture_with_truth(seed, identity, finger, encounter, capture, quality):
    master, n, ref, cls = _encoded_master(seed, identity, finger)
    out = np.empty((MAX_IMPRESSION, 4))
    ref_out = np.empty(4)
    k = impression_from_master(seed, identity, finger, encounter, capture, quality, 1.0,
                               master, n, ref, cls, out, ref_out)
    t = out[:k, 3]
    idx = np.where(t > 5, t - 10.5, np.where(t < -5, -t - 9.5, -1)).round().astype(np.int64)
    return out[:k], idx


def _rigid_fit(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # least-squares rotation and translation of points a onto b; returns a moved
    ma, mb = a.mean(0), b.mean(0)
    x, y = a - ma, b - mb
    rot = np.arctan2(np.sum(x[:, 0] * y[:, 1] - x[:, 1] * y[:, 0]), np.sum(x * y))
    c, s = np.cos(rot), np.sin(rot)
    return (x @ np.array([[c, s], [-s, c]])) + mb


def truth(protocol: Protocol = Protocol(quality="2"), ids: np.ndarray | None = None,
          n: int = 2000) -> dict:
    """What genuine pairs share, from the capture model itself: for each
    pair (identities ids, or 0 .. n - 1), the number of minutiae captured in
    both (the same master minutia) and their displacement after the best
    rigid alignment of those pairs."""
    seed, finger, probe, gallery = protocol.seed, protocol.finger, protocol.probe, protocol.gallery
    ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    qg = qualities(PopulationSpec(seed=seed), ids, protocol, gallery=True)
    qp = qualities(PopulationSpec(seed=seed), ids, protocol, gallery=False)
    common = np.zeros(len(ids), dtype=np.int64)
    np_, ng = np.zeros(len(ids), np.int64), np.zeros(len(ids), np.int64)
    disp_all = []
    rms = np.zeros(len(ids))
    for r, i in enumerate(ids):
        a, ia = _capture_with_truth(seed, int(i), finger, 1, capture_index(probe), int(qp[r]))
        b, ib = _capture_with_truth(seed, int(i), finger, 0, capture_index(gallery), int(qg[r]))
        np_[r], ng[r] = len(a), len(b)
        both = np.intersect1d(ia[ia >= 0], ib[ib >= 0])
        common[r] = len(both)
        if len(both) >= 3:
            row_a = {k: q for q, k in enumerate(ia) if k >= 0}
            row_b = {k: q for q, k in enumerate(ib) if k >= 0}
            pa = a[[row_a[k] for k in both], :2]
            pb = b[[row_b[k] for k in both], :2]
            moved = _rigid_fit(pa, pb)
            d = np.linalg.norm(moved - pb, axis=1)
            disp_all.append(d)
            rms[r] = np.sqrt(np.mean(d ** 2))
    disp = np.concatenate(disp_all) if disp_all else np.zeros(1)
    return {"ids": ids, "common": common, "probe_n": np_, "gallery_n": ng, "rms_mm": rms,
            "displacement_mm_percentiles": {p: float(np.percentile(disp, p)) for p in (50, 90, 99)},
            "common_percentiles": {p: float(np.percentile(common, p)) for p in (0.5, 1, 5, 50)}}


def speed(seed: int = 3, n: int = 400, per: int = 50, rounds: int = 3) -> dict:
    """Comparisons per second of both matchers on the same plain (quality 2)
    against rolled (quality 2) pairs, each template in `per` pairs and
    prepared once per batch; with NUMBA_NUM_THREADS=1, per core. Also the
    MCC cost split: cylinders per template and scoring alone."""
    import numba
    ids = np.arange(n, dtype=np.int64)
    pt, pn = impression_batch(seed, ids, np.full(n, 2), np.ones(n, np.int64),
                              np.full(n, capture_index("plain")), np.full(n, 2), 1.0)
    gt, gn = impression_batch(seed, ids, np.full(n, 2), np.zeros(n, np.int64),
                              np.full(n, capture_index("rolled")), np.full(n, 2), 1.0)
    ia = np.repeat(ids, per)
    ib = (ia * 7 + np.tile(np.arange(per), n)) % n
    out = {"threads": numba.get_num_threads(), "pairs": len(ia), "templates_per_side": n}
    best = {}
    for name, fn in (("old", minutiae.match_many), ("mcc", mcc.match_many)):
        fn(pt, pn, gt, gn, ia[:4], ib[:4])
        best[name] = min(_timed(fn, pt, pn, gt, gn, ia, ib)[1] for _ in range(rounds))
        out[name + "_comparisons_per_s"] = len(ia) / best[name]
    pa = mcc.prepare(pt, pn)
    pb = mcc.prepare(gt, gn)
    mcc.score_many(pa, pb, ia[:4], ib[:4])
    tp = min(_timed(mcc.prepare, gt, gn)[1] for _ in range(rounds))
    tq = min(_timed(mcc.prepare, pt, pn)[1] for _ in range(rounds))
    ts = min(_timed(mcc.score_many, pa, pb, ia, ib)[1] for _ in range(rounds))
    out.update({"mcc_rolled_cylinders_per_s": n / tp, "mcc_plain_cylinders_per_s": n / tq,
                "mcc_scoring_only_per_s": len(ia) / ts,
                "ratio_mcc_over_old": best["old"] / best["mcc"]})
    return out


def failures(path: str, protocol: Protocol = Protocol(), fmr: float = 1e-4) -> dict:
    """The genuine pairs MCC misses at FMR fmr (scores saved by ``accuracy
    --save``), set beside what the capture model says they share."""
    z = np.load(path)
    gen, imp = z["mcc_genuine"], z["mcc_impostor"]
    t = threshold_at(imp, fmr)
    missed = np.flatnonzero(gen < t)
    tr = truth(protocol, ids=np.arange(len(gen)))
    common = tr["common"]
    out = {"threshold": t, "missed": missed.tolist(), "missed_common": common[missed].tolist(),
           "missed_rms_mm": tr["rms_mm"][missed].round(3).tolist(),
           "missed_probe_n": tr["probe_n"][missed].tolist(),
           "common_percentiles": tr["common_percentiles"],
           "displacement_mm_percentiles": tr["displacement_mm_percentiles"],
           "rms_mm_median": float(np.median(tr["rms_mm"]))}
    for k in (6, 8, 10, 12, 15):
        sel = common < k
        out[f"pairs_with_fewer_than_{k}_common"] = int(sel.sum())
        out[f"fnmr_among_fewer_than_{k}_common"] = float(np.mean(gen[sel] < t)) if sel.any() else None
        out[f"fnmr_among_{k}_or_more_common"] = float(np.mean(gen[~sel] < t)) if (~sel).any() else None
    return out


def cross(pr_path: str, pp_path: str, fmr: float = 1e-4) -> dict:
    """Plain-against-plain impostor comparisons at the thresholds set on
    plain-against-rolled ones (FMR fmr): the share that reaches each
    matcher's threshold, and the paired count's P(paired >= 12)."""
    pr, pp = np.load(pr_path), np.load(pp_path)
    out = {}
    for m in ("old", "mcc"):
        t = threshold_at(pr[f"{m}_impostor"], fmr)
        imp = pp[f"{m}_impostor"]
        k = int(np.sum(imp >= t))
        out[m] = {"threshold": t, "plain_impostor_share_at_or_above": k / len(imp),
                  "ci95": clopper_pearson(k, len(imp)), "comparisons": len(imp)}
    imp = pp["old_impostor"]
    k = int(np.sum(imp >= 12))
    out["old"]["p_paired_ge_12"] = k / len(imp)
    out["old"]["p_paired_ge_12_ci95"] = clopper_pearson(k, len(imp))
    return out


def _jsonable(d):
    if isinstance(d, dict):
        return {str(k): _jsonable(v) for k, v in d.items() if not str(k).endswith("_scores")}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    if isinstance(d, np.ndarray):
        return None
    if isinstance(d, (np.floating, np.integer)):
        return d.item()
    return d


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("accuracy", "truth", "speed", "failures", "cross"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--finger", type=int, default=2)
    p.add_argument("--probe", default="plain")
    p.add_argument("--gallery", default="rolled")
    p.add_argument("--quality", default="mix", help='"mix" (default scenario shares) or 1..5')
    p.add_argument("--genuine", type=int, default=5000)
    p.add_argument("--impostor", type=int, default=100_000)
    p.add_argument("--fmr", type=float, default=1e-4)
    p.add_argument("--save", help="write genuine and impostor scores to this .npz")
    p.add_argument("--scores", nargs="+", help="failures: one .npz; cross: plain-rolled and plain-plain .npz")
    p.add_argument("--profile", help="accuracy: a matcher profile's extraction and capture noise, "
                   "quality shares and correlation (profiles/NAME.toml) instead of fpscale's defaults")
    a = p.parse_args(argv)
    protocol = Protocol(a.seed, a.finger, a.probe, a.gallery, a.quality)
    if a.what == "accuracy":
        try:
            pop = spec_from_dict(read_profile(a.profile).get("population", {})) if a.profile else None
        except (ProfileError, ValueError) as e:
            p.exit(2, f"fpscale: error: {e}\n")
        r = accuracy(protocol, Sample(a.genuine, a.impostor), fmr=a.fmr, pop=pop)
        if a.save:
            np.savez_compressed(a.save, **{f"{m}_{k}": v for m in ("old", "mcc")
                                           for k, v in r[m + "_scores"].items()})
    elif a.what == "failures":
        r = failures(a.scores[0], protocol, a.fmr)
    elif a.what == "cross":
        r = cross(a.scores[0], a.scores[1], a.fmr)
    elif a.what == "truth":
        r = truth(protocol, n=a.genuine)
    else:
        r = speed()
    print(json.dumps(_jsonable(r), indent=1))


if __name__ == "__main__":
    main()

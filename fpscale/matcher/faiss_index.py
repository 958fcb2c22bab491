"""faiss indexes built from index_factory strings.

Float indexes use the inner-product metric; binary factory strings
("BFlat", "BIVF1024", "BHNSW32") give binary indexes whose Hamming distances
are turned into similarities (bits - distance). Ids are attached natively
where the index supports it (IVF) and through an IDMap wrapper otherwise.
Search-time parameters go through faiss's ParameterSpace ("nprobe=16",
"efSearch=64"); binary indexes, which ParameterSpace does not cover, get the
same names set as attributes.
"""

from __future__ import annotations

import re

import faiss
import numpy as np

from fpscale.matcher.checks import MatcherInputError
from fpscale.matcher.interface import Backend
from fpscale.matcher.topk import merge_lists


class FaissIndex(Backend):
    """A faiss index from an index_factory string."""

    def __init__(self, factory: str, d: int, threads: int | None = None, seed: int = 0) -> None:
        self.binary = factory.startswith("B")
        super().__init__(d, threads)
        self.factory = factory
        self.name = f"faiss:{factory}"
        self.seed = seed
        try:
            if self.binary:
                base = faiss.index_binary_factory(d, factory)
            else:
                base = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[-1] if str(e).strip() else "not understood"
            raise MatcherInputError(f"faiss cannot build index {factory!r} for d={d}: {first}") from None
        self._native_ids = "IVF" in factory or factory.startswith("IDMap")
        if self._native_ids:
            self.index = base
        else:
            self.index = (faiss.IndexBinaryIDMap(base) if self.binary else faiss.IndexIDMap(base))
            self._base = base  # keep the wrapped index alive
        self._params = ""

    @property
    def needs_training(self) -> bool:
        return not self.index.is_trained

    def train(self, sample: np.ndarray) -> None:
        sample = self._check_data("training sample", sample)
        if not self.needs_training:
            return
        self._with_threads(lambda: self._train(sample))

    def _train(self, sample: np.ndarray) -> None:
        # faiss's k-means draws its own subsample; seed it for repeatable runs
        inner = self.index.index if hasattr(self.index, "id_map") else self.index
        target = faiss.downcast_IndexBinary(inner) if self.binary else faiss.downcast_index(inner)
        for attr in ("cp", "pq"):
            obj = getattr(target, attr, None)
            if obj is not None and hasattr(obj, "seed"):
                obj.seed = self.seed
        # faiss prints "WARNING clustering n points to k centroids" from C++
        # straight to stderr whenever n < min_points_per_centroid * k,
        # whatever cp.verbose says; the caller states a short training sample
        # itself, so every k-means here only needs n >= k
        opq = _opq_transforms(target)
        for t in opq:  # OPQ trains a product quantizer of its own unless given one
            t.pq = faiss.ProductQuantizer(t.d_out, t.M, 8)
        try:
            for cp in _clustering_parameters(target) + [t.pq.cp for t in opq]:
                cp.min_points_per_centroid = 1
            self.index.train(sample)
        finally:
            for t in opq:
                t.pq = None  # the rotation is what OPQ keeps

    def _with_threads(self, fn):
        if self.threads is None:
            return fn()
        old = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.threads)
        try:
            return fn()
        finally:
            faiss.omp_set_num_threads(old)

    def _add(self, ids: np.ndarray, data: np.ndarray) -> None:
        if self.needs_training:
            raise MatcherInputError(f"{self.name} must be trained before records are added")
        self._with_threads(lambda: self.index.add_with_ids(data, ids))

    def set_search_params(self, params: str) -> None:
        if not params:
            return
        if self.binary:
            for item in params.split(","):
                m = re.fullmatch(r"\s*(\w+)\s*=\s*(\d+)\s*", item)
                target = faiss.downcast_IndexBinary(getattr(self.index, "index", self.index))
                if not m or not hasattr(target, m.group(1)):
                    raise MatcherInputError(f"{self.name}: unknown search parameter {item!r}")
                setattr(target, m.group(1), int(m.group(2)))
        else:
            try:
                faiss.ParameterSpace().set_index_parameters(self.index, params)
            except RuntimeError:
                raise MatcherInputError(f"{self.name}: search parameters {params!r} do not apply") from None
        self._params = params

    def _search(self, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        dist, ids = self._with_threads(lambda: self.index.search(probes, k))
        ids = ids.astype(np.int64, copy=False)
        if self.binary:
            scores = (self.d - dist).astype(np.float32)
        else:
            scores = dist.astype(np.float32, copy=False)
        scores[ids < 0] = -np.inf
        # faiss leaves equal scores in heap order; fpscale's order (ties to
        # the lower id) makes a list independent of how the gallery was
        # split or batched
        return merge_lists([(ids, scores)], k)

    def nbytes(self) -> int:
        if self.binary:
            return int(faiss.serialize_index_binary(self.index).nbytes)
        return int(faiss.serialize_index(self.index).nbytes)

    def export_state(self) -> dict[str, np.ndarray]:
        """The index serialized by faiss's own IO, as a uint8 array."""
        ser = faiss.serialize_index_binary if self.binary else faiss.serialize_index
        return {"faiss": ser(self.index)}

    def import_state(self, state: dict[str, np.ndarray]) -> None:
        blob = np.asarray(state["faiss"])
        if blob.dtype != np.uint8 or blob.ndim != 1:
            raise MatcherInputError(f"state faiss must be a uint8 vector, got {blob.dtype} {blob.shape}")
        de = faiss.deserialize_index_binary if self.binary else faiss.deserialize_index
        try:
            index = de(np.ascontiguousarray(blob))
        except RuntimeError as e:
            raise MatcherInputError(f"{self.name}: the saved index cannot be read ({str(e)[:120]})") from None
        if index.d != self.d:
            raise MatcherInputError(f"{self.name}: the saved index has width {index.d}, expected {self.d}")
        self.index = index
        self._base = None
        self.ntotal = int(self.index.ntotal)
        if self._params:
            self.set_search_params(self._params)


def _clustering_parameters(index) -> list:
    """The k-means parameters (faiss ClusteringParameters) an index trains
    with: its coarse quantizer's (IVF) and its product quantizer's (PQ),
    behind a pre-transform too."""
    found = []
    while index is not None:
        for obj in (index, getattr(index, "pq", None)):
            cp = getattr(obj, "cp", None)
            if cp is not None and hasattr(cp, "min_points_per_centroid"):
                found.append(cp)
        inner = getattr(index, "index", None)  # IndexPreTransform, IndexRefine, ...
        if inner is None or not hasattr(inner, "train"):
            break
        index = faiss.downcast_index(inner) if isinstance(inner, faiss.Index) else \
            faiss.downcast_IndexBinary(inner)
    return found


def _opq_transforms(index) -> list:
    """The OPQ rotations in front of an index (IndexPreTransform's chain)."""
    chain = getattr(index, "chain", None)
    if chain is None:
        return []
    found = [faiss.downcast_VectorTransform(chain.at(i)) for i in range(chain.size())]
    return [t for t in found if isinstance(t, faiss.OPQMatrix)]


def factory_memory_estimate(factory: str, n: int, d: int) -> int:
    """Bytes an index_factory index holds for n records (d dims or d bits).

    From the layouts in the faiss wiki ("Guidelines to choose an index",
    "Indexes that do not fit in RAM"): flat codes 4d bytes (d/8 for binary);
    IVF adds 8-byte ids per record and the centroids; PQm stores m bytes per
    record plus 256 centroids per sub-quantizer; HNSW-M keeps about 2M
    4-byte links at level 0 (plus upper levels, about 1/M as many); OPQ adds
    a d x d rotation; IDMap adds 8-byte ids.
    """
    binary = factory.startswith("B")
    body = factory[1:] if binary else factory
    per = 0.0
    fixed = 0.0
    ids = 8.0
    m_ivf = re.search(r"IVF(\d+)", body)
    m_pq = re.search(r"PQ(\d+)", body)
    m_hnsw = re.search(r"HNSW(\d+)", body)
    m_opq = re.search(r"OPQ(\d+)", body)
    code = d / 8 if binary else 4.0 * d
    if m_pq:
        m = int(m_pq.group(1))
        code = float(m)
        fixed += 256 * d * 4
    if "SQ8" in body:
        code = float(d)
    per += code
    if m_ivf:
        fixed += int(m_ivf.group(1)) * (d / 8 if binary else 4 * d)
    if m_hnsw:
        M = int(m_hnsw.group(1))
        per += 2 * M * 4 * (1 + 1.0 / M) + 8
    if m_opq:
        fixed += d * d * 4
    per += ids
    return int(n * per + fixed)

"""Maximum-inner-product search (eq. 5) for training and serving: exact and FAISS HNSW.

Both classes answer ``search(queries [B, L], k) -> (scores [B, k], ids [B, k])``
(best first, torch tensors on the queries' device), so the mixture proposal
and the greedy evaluation take either.

:class:`HNSWIndex` is ``faiss.IndexHNSWFlat`` with ``METRIC_INNER_PRODUCT``
(Malkov and Yashunin's graph index, as in the paper), built once on the fixed
item embeddings :math:`\\beta` and cached under
``rec_lib.paths.cache_dir() / "faiss"``, keyed by a hash of :math:`\\beta`
and the build parameters.

``augment=True`` (the default) stores :math:`(\\beta_a, \\sqrt{M^2 - \\|\\beta_a\\|^2})`
with :math:`M = \\max_a \\|\\beta_a\\|` and searches with :math:`(h, 0)`: the
inner product of query and item is unchanged, so the index answers the same
MIPS problem, but every stored vector now has the same norm, which makes
the graph the index builds a nearest-neighbour graph of a proper metric.
An inner-product graph built on vectors of unequal norms links most items to
a few long "hub" vectors and loses recall on clustered catalogues (the
chapter measures both).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from rec_lib.paths import cache_dir
from rec_lib.policy_learning.policy import exact_topk
from rec_lib.utils import atomic_write

__all__ = ["ExactIndex", "HNSWIndex", "IVFIndex", "topk_recall", "beta_hash"]


def _numpy_f32(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def beta_hash(beta, **params) -> str:
    """sha256 of the embedding matrix (shape, dtype, bytes) and the build parameters."""
    b = _numpy_f32(beta)
    h = hashlib.sha256()
    h.update(json.dumps({"shape": b.shape, **params}, sort_keys=True).encode())
    h.update(memoryview(b).cast("B"))
    return h.hexdigest()


class ExactIndex:
    """Exact MIPS by chunked scoring of the whole catalogue (``O(B P L)``), same interface as HNSW."""

    def __init__(self, beta) -> None:
        self.beta = beta if isinstance(beta, torch.Tensor) else torch.from_numpy(_numpy_f32(beta))
        self.n_items = self.beta.shape[0]

    def search(self, queries, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        q = queries if isinstance(queries, torch.Tensor) else torch.from_numpy(_numpy_f32(queries))
        s, i = exact_topk(q.detach().to(self.beta.device), self.beta, k)
        return s.to(q.device), i.to(q.device)


class HNSWIndex:
    """A FAISS HNSW inner-product index over fixed item embeddings, built once and cached.

    Parameters
    ----------
    beta:
        item embeddings ``[P, L]``.
    M:
        graph degree (``IndexHNSWFlat``'s ``M``; level 0 keeps ``2 M`` links).
    ef_construction, ef_search:
        candidate-list sizes when building and when searching (``ef_search``
        can be changed later with :meth:`set_ef_search`).
    augment:
        store :math:`(\\beta_a, \\sqrt{M^2-\\|\\beta_a\\|^2})` (module docstring).
    cache:
        read/write the built index under ``cache_dir()/"faiss"`` (atomic write).
    threads:
        FAISS's OpenMP threads for searching (default: leave FAISS's setting).
    build_threads:
        threads for building; ``1`` (default) inserts the items in a fixed
        order, so the graph (and everything trained with it) is
        reproducible; ``0`` uses all cores (faster, not bit-reproducible;
        the paper scale's :math:`L = 1000` builds need it).
    """

    def __init__(self, beta, M: int = 32, ef_construction: int = 64, ef_search: int = 256, augment: bool = True,
                 cache: bool = True, threads: int | None = None, build_threads: int = 1) -> None:
        import faiss

        b = _numpy_f32(beta)
        if b.ndim != 2 or b.shape[0] < 2:
            raise ValueError(f"beta must be a [P, L] matrix with P >= 2, got shape {b.shape}")
        for name, v in (("M", M), ("ef_construction", ef_construction), ("ef_search", ef_search)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if threads is not None:
            faiss.omp_set_num_threads(int(threads))
        self.n_items, self.dim = b.shape
        self.params = {"M": int(M), "ef_construction": int(ef_construction), "augment": bool(augment),
                       "metric": "inner_product", "faiss": faiss.__version__}
        if build_threads != 1:  # a parallel build gives another graph: keep it apart from the reproducible one
            self.params["parallel_build"] = True
        self.key = beta_hash(b, **self.params)
        self.path = cache_dir() / "faiss" / f"hnsw-{self.key[:24]}.index"
        self.from_cache = False
        if cache and self.path.exists() and self.path.with_suffix(".json").exists():
            self.index = faiss.read_index(str(self.path))
            meta = json.loads(self.path.with_suffix(".json").read_text())
            self.build_seconds = float(meta["build_seconds"])
            self.from_cache = True
        else:
            data = self._augment(b) if augment else b
            self.index = faiss.IndexHNSWFlat(data.shape[1], int(M), faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = int(ef_construction)
            before = faiss.omp_get_max_threads()
            # a parallel build inserts in a racy order: one thread keeps it deterministic
            faiss.omp_set_num_threads(build_threads or (os.cpu_count() or 1))
            try:
                t0 = time.perf_counter()
                self.index.add(data)
                self.build_seconds = time.perf_counter() - t0
            finally:
                faiss.omp_set_num_threads(before)
            if cache:
                self._save()
        self.memory_bytes = int(self.path.stat().st_size) if self.path.exists() else self._size()
        self.set_ef_search(ef_search)

    @staticmethod
    def _augment(b: np.ndarray) -> np.ndarray:
        n2 = np.einsum("pl,pl->p", b, b, dtype=np.float64)
        extra = np.sqrt(np.maximum(n2.max() - n2, 0.0)).astype(np.float32)
        return np.hstack([b, extra[:, None]])

    def _size(self) -> int:
        import faiss

        return int(faiss.serialize_index(self.index).nbytes)

    def _save(self) -> None:
        import faiss

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            faiss.write_index(self.index, str(tmp))
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
        with atomic_write(self.path.with_suffix(".json")) as fh:
            json.dump({"build_seconds": self.build_seconds, "n_items": self.n_items, "dim": self.dim, **self.params}, fh)

    @property
    def ef_search(self) -> int:
        return int(self.index.hnsw.efSearch)

    def set_ef_search(self, ef_search: int) -> "HNSWIndex":
        if not isinstance(ef_search, (int, np.integer)) or ef_search < 1:
            raise ValueError(f"ef_search must be a positive integer, got {ef_search!r}")
        self.index.hnsw.efSearch = int(ef_search)
        return self

    def search(self, queries, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Approximate top-``k`` by inner product, one batched FAISS call; ids ``-1`` mark missing results."""
        if not 1 <= k <= self.n_items:
            raise ValueError(f"k must be in [1, {self.n_items}] (the catalogue size), got {k}")
        device = queries.device if isinstance(queries, torch.Tensor) else torch.device("cpu")
        q = _numpy_f32(queries)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be [B, {self.dim}], got shape {q.shape}")
        if self.params["augment"]:
            q = np.hstack([q, np.zeros((len(q), 1), np.float32)])
        scores, ids = self.index.search(q, int(k))
        return torch.from_numpy(scores).to(device), torch.from_numpy(ids).to(device)


class IVFIndex:
    """FAISS ``IndexIVFFlat`` (inverted lists, inner product) on the same augmented vectors as :class:`HNSWIndex`.

    A sublinear top-K whose build is seconds at :math:`10^6` items on one
    thread (k-means on a fixed, seeded subsample), where a single-threaded
    HNSW build takes minutes. ``nlist`` lists; a search visits ``nprobe`` of
    them, so it costs about ``nlist + nprobe P / nlist`` inner products
    (default ``nlist`` = ``sqrt(P)`` rounded to a power of two, k-means on
    ``40 nlist`` vectors). Not cached (it builds in seconds). Same ``search``
    as HNSW.
    """

    def __init__(self, beta, nlist: int | None = None, nprobe: int = 16, train_per_list: int = 40,
                 seed: int = 0) -> None:
        import faiss

        b = _numpy_f32(beta)
        if b.ndim != 2 or b.shape[0] < 2:
            raise ValueError(f"beta must be a [P, L] matrix with P >= 2, got shape {b.shape}")
        self.n_items, self.dim = b.shape
        if nlist is None:
            nlist = int(2 ** round(np.log2(np.sqrt(self.n_items))))
        nlist = int(min(max(nlist, 1), self.n_items))
        if nprobe < 1:
            raise ValueError(f"nprobe must be >= 1, got {nprobe}")
        data = HNSWIndex._augment(b)
        t0 = time.perf_counter()
        quantizer = faiss.IndexFlatIP(data.shape[1])
        self.index = faiss.IndexIVFFlat(quantizer, data.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = int(seed)
        self.index.cp.min_points_per_centroid = 1  # no warning: 40 points per list are enough here
        rng = np.random.default_rng(seed)
        n_train = min(self.n_items, int(train_per_list) * nlist)
        sub = data[np.sort(rng.choice(self.n_items, n_train, replace=False))]
        self.index.train(sub)
        self.index.add(data)
        self.build_seconds = time.perf_counter() - t0
        self.index.nprobe = int(min(nprobe, nlist))
        self.params = {"nlist": nlist, "nprobe": int(self.index.nprobe), "augment": True}
        self.memory_bytes = int(data.nbytes)
        self.from_cache = False

    def search(self, queries, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Approximate top-``k`` by inner product (ids ``-1`` where the visited lists hold fewer than ``k``)."""
        if not 1 <= k <= self.n_items:
            raise ValueError(f"k must be in [1, {self.n_items}] (the catalogue size), got {k}")
        device = queries.device if isinstance(queries, torch.Tensor) else torch.device("cpu")
        q = _numpy_f32(queries)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be [B, {self.dim}], got shape {q.shape}")
        q = np.hstack([q, np.zeros((len(q), 1), np.float32)])
        scores, ids = self.index.search(q, int(k))
        return torch.from_numpy(scores).to(device), torch.from_numpy(ids).to(device)


def topk_recall(approx_ids: torch.Tensor, exact_ids: torch.Tensor) -> float:
    """Mean over rows of :math:`|A_i \\cap E_i| / k`: the share of the exact top-k an index returned."""
    a, e = torch.as_tensor(approx_ids), torch.as_tensor(exact_ids)
    if a.ndim != 2 or a.shape != e.shape:
        raise ValueError(f"approx and exact ids must both be [B, k], got {tuple(a.shape)} and {tuple(e.shape)}")
    srt = e.sort(dim=1).values
    pos = torch.searchsorted(srt, a.contiguous()).clamp_(max=e.shape[1] - 1)
    hit = (srt.gather(1, pos) == a) & (a >= 0)
    return float(hit.float().sum(1).div(e.shape[1]).mean())

"""The periodic-retraining protocol of SML (Zhang et al. 2020, §2 and §4.1.3).

Interactions in time order are cut into periods ``D_0, ..., D_T``
(:func:`make_stream`). The first ``init_end`` periods train an initial model;
from then on, at every period ``t`` a strategy retrains with what it may see
(``D_0 .. D_t``, through a :class:`History` that refuses anything later), and
from ``val_start`` on, the model is first *tested* on the newly arrived
``D_t`` -- before any training on it (Algorithm 2, line 1). Each test
interaction is ranked against ``n_neg`` (999) sampled items the user never
interacted with; candidate sets are drawn from a generator seeded by
``(seed, period)``, so every strategy is ranked on the same candidates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from rec_lib.data.filters import k_core, to_implicit
from rec_lib.data.sampling import SeenItems, candidate_sets
from rec_lib.data.schema import Interactions
from rec_lib.data.splits import assign_periods, calendar_periods
from rec_lib.metrics import rank_against_candidates, ranking_metrics, weighted_mean
from rec_lib.utils import Stopwatch, progress

__all__ = [
    "PeriodProtocol",
    "PROTOCOLS",
    "PeriodStream",
    "make_stream",
    "History",
    "LeakageError",
    "previous_items",
    "interaction_types",
    "RunResult",
    "run_strategy",
    "INTERACTION_TYPES",
]


@dataclass(frozen=True)
class PeriodProtocol:
    """How a dataset is cut into periods and which periods play which role.

    ``scheme="count"``: ``n_periods`` periods of equal interaction counts
    (Yelp, ML-100K); ``scheme="dayparts"``: calendar periods cut at the hours
    ``day_parts`` (Adressa: 0-10, 10-17, 17-24). Periods ``[0, init_end)``
    train the initial model, ``[init_end, val_start)`` are SML's sequential
    training periods, ``[val_start, test_start)`` validation and
    ``[test_start, T]`` test. ``min_user``/``min_item`` filter inactive users
    and unpopular items first (Yelp: 10 and 20). ``tz`` is the wall-clock
    time zone of the day parts (Adressa: Trondheim, ``Europe/Oslo``).
    """

    scheme: str = "count"
    n_periods: int = 30
    init_end: int = 10
    val_start: int = 20
    test_start: int = 23
    day_parts: tuple[int, ...] = (0, 10, 17)
    min_user: int = 1
    min_item: int = 1
    tz: str = "UTC"

    def validate(self, n_periods: int | None = None) -> None:
        n = n_periods or self.n_periods
        if self.scheme not in ("count", "dayparts"):
            raise ValueError(f"period scheme must be 'count' or 'dayparts', got {self.scheme!r}")
        if not 1 <= self.init_end < self.val_start <= self.test_start < n:
            raise ValueError(
                f"need 1 <= init_end ({self.init_end}) < val_start ({self.val_start}) <= test_start "
                f"({self.test_start}) < number of periods ({n})")


# The paper's protocols (§4.1.1, §4.1.3) and ours for MovieLens-100K and the synthetic stream.
PROTOCOLS: dict[str, PeriodProtocol] = {
    "yelp": PeriodProtocol("count", 40, init_end=10, val_start=30, test_start=33, min_user=10, min_item=20),
    "adressa": PeriodProtocol("dayparts", 63, init_end=20, val_start=48, test_start=53, tz="Europe/Oslo"),
    "ml-100k": PeriodProtocol("count", 30, init_end=10, val_start=20, test_start=23),
    "synthetic": PeriodProtocol("count", 30, init_end=10, val_start=20, test_start=23),
}


INTERACTION_TYPES = ("OU-OI", "OU-NI", "NU-OI", "NU-NI")


@dataclass
class PeriodStream:
    """A dataset cut into periods, with the roles of :class:`PeriodProtocol`.

    ``data`` is implicit (every interaction a positive); ``period[r]`` is the
    period of row ``r``; ``seen`` holds every (user, item) pair of the whole
    stream, so a sampled negative is never an item the user ever interacts with.
    """

    data: Interactions
    period: np.ndarray
    protocol: PeriodProtocol
    seen: SeenItems
    bounds: np.ndarray = field(repr=False)  # rows of period t are bounds[t]:bounds[t+1]

    @property
    def n_periods(self) -> int:
        return len(self.bounds) - 1

    def rows(self, t: int) -> slice:
        return slice(int(self.bounds[t]), int(self.bounds[t + 1]))

    def arrays(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """``(users, items)`` of period ``t``."""
        r = self.rows(t)
        return self.data.users[r], self.data.items[r]

    def arrays_upto(self, t: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(users, items)`` of periods ``start .. t`` together."""
        r = slice(int(self.bounds[start]), int(self.bounds[t + 1]))
        return self.data.users[r], self.data.items[r]

    @property
    def eval_periods(self) -> list[int]:
        return list(range(self.protocol.val_start, self.n_periods))

    @property
    def test_periods(self) -> list[int]:
        return list(range(self.protocol.test_start, self.n_periods))

    def summary(self) -> pd.DataFrame:
        """One row per period: interactions, users, items, role, share of new users and items."""
        first_u, first_i = self.first_periods()
        rows = []
        p = self.protocol
        for t in range(self.n_periods):
            u, i = self.arrays(t)
            role = ("init" if t < p.init_end else "train" if t < p.val_start else "val" if t < p.test_start else "test")
            rows.append({"period": t, "role": role, "interactions": len(u), "users": len(np.unique(u)),
                         "items": len(np.unique(i)), "new users": float(np.mean(first_u[u] == t)),
                         "new items": float(np.mean(first_i[i] == t))})
        return pd.DataFrame(rows).set_index("period")

    def __getstate__(self) -> dict:  # caches stay behind when a stream is sent to a worker process
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def candidates(self, t: int, seed: int, n_neg: int = 999, cache_bytes: int = 1 << 28) -> torch.Tensor:
        """``[len(D_t), 1 + n_neg]`` test candidates of period ``t``: the positive, then ``n_neg`` sampled negatives.

        Drawn among the items the user never interacts with in the whole
        stream, from a generator seeded by ``(seed, t)``: every strategy of a
        run is ranked on the same candidates. Kept in a cache of at most
        ``cache_bytes`` (oldest entries dropped first).
        """
        cache = self.__dict__.setdefault("_cand_cache", {})
        key = (seed, t, n_neg)
        if key not in cache:
            users, items = self.arrays(t)
            c = candidate_sets(users, items, n_neg, self.seen, np.random.default_rng([seed, t]))
            c = torch.as_tensor(c.astype(np.int32 if self.data.n_items < 2**31 else np.int64))
            while cache and sum(v.numel() * v.element_size() for v in cache.values()) + c.numel() * c.element_size() > cache_bytes:
                cache.pop(next(iter(cache)))
            cache[key] = c
        return cache[key].long()

    def seen_upto(self, t: int) -> SeenItems:
        """The (user, item) pairs of ``D_0 .. D_t`` (cached)."""
        cache = self.__dict__.setdefault("_seen_cache", {})
        if t not in cache:
            r = slice(0, int(self.bounds[t + 1]))
            cache[t] = SeenItems.from_pairs(self.data.users[r], self.data.items[r], self.data.n_users, self.data.n_items)
        return cache[t]

    def first_periods(self) -> tuple[np.ndarray, np.ndarray]:
        """The first period of each user and of each item."""
        first_u = np.full(self.data.n_users, self.n_periods, dtype=np.int64)
        first_i = np.full(self.data.n_items, self.n_periods, dtype=np.int64)
        np.minimum.at(first_u, self.data.users, self.period)
        np.minimum.at(first_i, self.data.items, self.period)
        return first_u, first_i


def make_stream(data: Interactions, protocol: PeriodProtocol) -> PeriodStream:
    """Filter (``min_user``/``min_item``), make implicit and cut into periods by ``protocol``.

    ``dayparts`` periods are numbered in time order over the calendar
    windows that hold interactions; the protocol's period indices refer to them.
    """
    protocol.validate()
    if protocol.min_user > 1 or protocol.min_item > 1:
        data = k_core(data, protocol.min_user, protocol.min_item)
    data = to_implicit(data, None, reindex=True)
    if protocol.scheme == "count":
        period = assign_periods(data, protocol.n_periods)
    else:
        period = calendar_periods(data, day_parts=protocol.day_parts, tz=protocol.tz)
    n = int(period.max()) + 1
    protocol.validate(n)
    if np.any(np.diff(period) < 0):
        raise ValueError("periods must be non-decreasing in time order")
    bounds = np.searchsorted(period, np.arange(n + 1), side="left")
    return PeriodStream(data, period, protocol, SeenItems.from_interactions(data), bounds)


class LeakageError(RuntimeError):
    """A strategy asked for data of a period it may not see yet."""


class History:
    """What a strategy may see when retraining at period ``t``: ``D_0 .. D_t``, nothing later.

    Every access is appended to ``log`` as ``("read", period)``; asking for a
    later period raises :class:`LeakageError`.
    """

    def __init__(self, stream: PeriodStream, t: int, log: list | None = None):
        self.stream, self.t, self.log = stream, t, log if log is not None else []

    def _check(self, k: int) -> None:
        if k > self.t:
            raise LeakageError(f"retraining at period {self.t} asked for period {k}, which has not arrived yet")
        if k < 0:
            raise IndexError(f"no period {k}")

    def period(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(users, items)`` of ``D_k``, ``k <= t``."""
        self._check(k)
        self.log.append(("read", k))
        return self.stream.arrays(k)

    def upto(self, k: int | None = None, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(users, items)`` of ``D_start .. D_k`` (default ``k = t``)."""
        rows = self.rows_upto(k, start)
        return self.stream.data.users[rows], self.stream.data.items[rows]

    def rows(self, k: int) -> np.ndarray:
        """Row indices (into ``stream.data``) of ``D_k``, ``k <= t``."""
        self._check(k)
        self.log.append(("read", k))
        return np.arange(self.stream.bounds[k], self.stream.bounds[k + 1])

    def rows_upto(self, k: int | None = None, start: int = 0) -> np.ndarray:
        """Row indices of ``D_start .. D_k`` (default ``k = t``)."""
        k = self.t if k is None else k
        self._check(k)
        self.log.extend(("read", j) for j in range(start, k + 1))
        return np.arange(self.stream.bounds[start], self.stream.bounds[k + 1])

    def interactions(self, k: int | None = None) -> Interactions:
        """``D_0 .. D_k`` as :class:`Interactions` (default ``k = t``)."""
        return self.stream.data.subset(self.rows_upto(k), name=f"{self.stream.data.name}-upto{self.t}")

    @property
    def seen(self) -> SeenItems:
        """The (user, item) pairs of ``D_0 .. D_t``: training negatives are drawn outside them."""
        return self.stream.seen_upto(self.t)

    @property
    def n_users(self) -> int:
        return self.stream.data.n_users

    @property
    def n_items(self) -> int:
        return self.stream.data.n_items


def previous_items(data: Interactions, L: int, pad: int) -> np.ndarray:
    """``[len(data), L]``: for each row, the user's ``L`` items just before it, oldest first.

    Right-aligned (the most recent item in the last column) and left-padded with
    ``pad``. Only strictly earlier rows of the same user enter, so a window
    never contains the row's own item or anything after it. Vectorised.
    """
    if L < 1:
        raise ValueError(f"L must be >= 1, got {L}")
    users, items = data.users, data.items
    order = np.lexsort((np.arange(len(data)), users))  # by user, then time
    u_sorted = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(u_sorted)) + 1]
    pos = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    dtype = np.int32 if max(pad, data.n_items) < 2**31 else np.int64  # windows of a large log are big
    out_sorted = np.full((len(order), L), pad, dtype=dtype)
    for lag in range(1, L + 1):  # positions in the window, vectorised over rows
        ok = pos >= lag
        src = np.flatnonzero(ok) - lag
        out_sorted[ok, L - lag] = items[order][src]
    out = np.empty_like(out_sorted)
    out[order] = out_sorted
    return out


def interaction_types(stream: PeriodStream, t: int) -> np.ndarray:
    """The type of each interaction of ``D_t`` (Figure 6): old/new user x old/new item.

    A user (item) is *new* at ``t`` when it has no interaction before ``D_t``.
    """
    first_u, first_i = stream.first_periods()
    u, i = stream.arrays(t)
    nu, ni = first_u[u] >= t, first_i[i] >= t
    labels = np.array(INTERACTION_TYPES)
    return labels[2 * nu.astype(int) + ni.astype(int)]


@dataclass
class RunResult:
    """What one strategy did over one stream: ranks and metrics per evaluated period, timings."""

    name: str
    ranks: dict[int, np.ndarray]
    metrics: pd.DataFrame  # one row per evaluated period
    seconds: dict[int, float]  # retraining wall time per period
    log: list = field(default_factory=list)
    probe: dict = field(default_factory=dict)  # the strategy's cold-start readings per tested period, if any

    def average(self, periods: Iterable[int] | None = None) -> dict[str, float]:
        """Metrics averaged over ``periods`` (default: all evaluated), weighted by interactions."""
        periods = list(self.metrics.index if periods is None else periods)
        m = self.metrics.loc[periods]
        per = {t: m.loc[t].drop("interactions").to_dict() for t in periods}
        return weighted_mean(per, m["interactions"].to_dict())


@torch.no_grad()
def _period_ranks(strategy, stream: PeriodStream, t: int, seed: int, n_neg: int, batch_size: int = 512) -> np.ndarray:
    users, items = stream.arrays(t)
    cands = stream.candidates(t, seed, n_neg)
    rows = np.arange(*stream.rows(t).indices(len(stream.data)))
    out = []
    for s in range(0, len(users), batch_size):
        scores = strategy.score(torch.tensor(users[s : s + batch_size]), torch.as_tensor(rows[s : s + batch_size]),
                                cands[s : s + batch_size])
        out.append(rank_against_candidates(scores.float().cpu()))
    return torch.cat(out).numpy().astype(np.int32)


def run_strategy(strategy, stream: PeriodStream, seed: int = 0, n_neg: int = 999, ks: tuple[int, ...] = (5, 10, 20),
                 start: int | None = None, stop: int | None = None, log: list | None = None, desc: str = "") -> RunResult:
    """Run the protocol for one strategy: pretrain, then (test, retrain) at every period.

    ``strategy`` has ``pretrain(history)``, ``update(history)`` and
    ``score(users, rows, candidates)`` (rows index ``stream.data``; candidates
    ``[B, 1 + n_neg]``, column 0 the positive). ``start`` skips pretraining
    and resumes a strategy already advanced to ``start - 1`` (used to fork
    SML-S from SML at the first serving period); ``stop`` ends early.
    ``log`` receives ``("test", t)``, ``("update", t)`` and the history's
    ``("read", k)`` events in order, so the no-leakage rule can be checked.
    """
    p = stream.protocol
    log = log if log is not None else []
    start = p.init_end if start is None else start
    stop = stream.n_periods if stop is None else stop
    if start == p.init_end:
        log.append(("pretrain", p.init_end - 1))
        strategy.pretrain(History(stream, p.init_end - 1, log))
    ranks, rows, watch = {}, [], Stopwatch()
    for t in progress(range(start, stop), desc=desc or getattr(strategy, "name", "run")):
        if t >= p.val_start:
            log.append(("test", t))
            r = _period_ranks(strategy, stream, t, seed, n_neg)
            ranks[t] = r
            rows.append({"period": t, "interactions": len(r), **ranking_metrics(torch.as_tensor(r), ks)})
        if hasattr(strategy, "on_serving") and t == p.val_start:
            strategy.on_serving()
        log.append(("update", t))
        with watch(str(t)):
            strategy.update(History(stream, t, log))
    metrics = pd.DataFrame(rows).set_index("period") if rows else pd.DataFrame()
    seconds = {int(k): v[0] for k, v in watch.times.items()}
    probe = {t: v for t, v in getattr(strategy, "probe", {}).items() if start <= t < stop}
    return RunResult(getattr(strategy, "name", type(strategy).__name__), ranks, metrics, seconds, log, dict(probe))

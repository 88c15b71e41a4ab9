"""Checks of the data chapter: protocols compared row by row, and what the generators plant.

Protocols (``book/data_protocols.ipynb``, "Candidate sets and sampled metrics"):

- :func:`protocol_ranks` ranks each test row under the full catalogue and
  under sampled candidate sets, from one score matrix per user, with the
  **same** items left out of both (the user's other interactions; the
  target stays), so a sampled rank can never exceed the full rank.
- :func:`sampled_hit_probability`: given a row's full rank ``R`` among
  ``M`` unseen items, ``N`` negatives drawn without replacement contain
  ``X ~ Hypergeometric(M, R - 1, N)`` items scored at least as high, so the
  sampled HR@k is ``P(X <= k - 1)``: sampled HR@10 at ``N = 99`` reads the
  full ranking near its top ``10 M / N`` positions, not its top 10
  (Krichene and Rendle, KDD 2020).
- :func:`discordant_pairs`: the pairs of methods two protocols order
  differently, each gap at least ``min_gap``.

Generators (``rec_lib.data.synthetic``):

- :func:`ou_autocorrelation`: the short-term interest ``s_u(t)`` recovered
  from the ground truth, ``s = (q - w p) / (1 - w)``, against the OU value
  ``E[s(t0 + d) . s(t0)] = exp(-d / tau) |s(t0)|^2``;
- :func:`drift_cosine` and :func:`drift_cosine_analytic`: the cosine
  between ``q_u(t)`` and ``q_u(t0)`` and its ratio-of-expectations value;
- :func:`heldout_choice_ranks`: held-out choices ranked by scorers that
  know less and less of the truth (oracle, long-term taste, common mean,
  popularity) over the same choice set as the generator;
- :func:`spectrum_slope`: the log-log slope of a catalogue's singular values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from rec_lib.data.sampling import SeenItems
from rec_lib.data.schema import Interactions

__all__ = [
    "protocol_ranks", "sampled_hit_probability", "discordant_pairs",
    "ou_autocorrelation", "drift_cosine", "drift_cosine_analytic",
    "heldout_choice_ranks", "spectrum_slope", "CHOICE_SCORERS",
    "METHODS", "tune_item_models", "fit_factor_models", "user_share_units", "hit_table",
]


# ----------------------------------------------------------------- protocols
@torch.no_grad()
def protocol_ranks(
    score_all: Callable[[torch.Tensor], torch.Tensor],
    users: np.ndarray,
    items: np.ndarray,
    candidates: Mapping[str, np.ndarray],
    exclude: SeenItems,
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """Ranks (pessimistic ties) of each row's item under ``"full"`` and each candidate set.

    ``score_all(users [B]) -> [B, n_items]`` is called once per distinct
    user. ``candidates[name]`` is ``[len(users), 1 + N]`` with the target in
    column 0 (:func:`rec_lib.data.candidate_sets`). The full rank leaves
    out the ``exclude`` items of the row's user except the target; sampled
    negatives must come from outside the same set for the two to be
    comparable (then ``sampled <= full`` on every row without repeats).
    """
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    uniq, inv = np.unique(users, return_inverse=True)
    out = {"full": np.empty(len(users), np.int64)} | {k: np.empty(len(users), np.int64) for k in candidates}
    for s in range(0, len(uniq), batch_size):
        u = uniq[s : s + batch_size]
        S = score_all(torch.as_tensor(u)).detach().cpu().numpy().astype(np.float64)
        mask = exclude.mask(u)
        rows = np.flatnonzero((inv >= s) & (inv < s + len(u)))
        srow = S[inv[rows] - s]
        target = srow[np.arange(len(rows)), items[rows]][:, None]
        ge = (srow >= target) & ~mask[inv[rows] - s]
        ge[np.arange(len(rows)), items[rows]] = False
        out["full"][rows] = 1 + ge.sum(1)
        for name, cand in candidates.items():
            c = np.asarray(cand)[rows]
            cs = np.take_along_axis(srow, c, axis=1)
            out[name][rows] = 1 + (cs[:, 1:] >= cs[:, :1]).sum(1)
    return out


def sampled_hit_probability(full_ranks: np.ndarray, unseen: np.ndarray, n: int, k: int = 10) -> np.ndarray:
    """Per row, ``P(sampled rank <= k)`` given the full rank and the number of unseen items.

    ``full_ranks`` counts the target's competitors among the ``unseen``
    items (rank ``R``: ``R - 1`` of them score at least as high). ``n``
    negatives drawn without replacement from the ``unseen`` items hold
    ``X ~ Hypergeometric(unseen, R - 1, n)`` of those, and the sampled rank
    is ``1 + X``. Rows with fewer than ``n`` unseen items (padded) get NaN.
    """
    from scipy.stats import hypergeom

    R, M = np.asarray(full_ranks, np.int64), np.asarray(unseen, np.int64)
    if R.shape != M.shape:
        raise ValueError(f"full_ranks and unseen must align, got {R.shape}, {M.shape}")
    if (R < 1).any() or (R - 1 > M).any():
        raise ValueError("need 1 <= rank <= unseen + 1 on every row")
    ok = M >= n
    p = np.full(R.shape, np.nan)
    p[ok] = hypergeom.cdf(k - 1, M[ok], R[ok] - 1, n)
    return p


def discordant_pairs(a: Mapping[str, float], b: Mapping[str, float], min_gap: float = 0.0) -> list[tuple[str, str]]:
    """Pairs ``(x, y)`` that ``a`` and ``b`` order oppositely, each by at least ``min_gap``.

    ``a`` and ``b`` map a method to its metric (higher is better). A pair
    counts when ``a[x] - a[y]`` and ``b[x] - b[y]`` have opposite signs and
    both are at least ``min_gap`` in size.
    """
    names = [m for m in a if m in b]
    out = []
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            ga, gb = a[x] - a[y], b[x] - b[y]
            if ga * gb < 0 and min(abs(ga), abs(gb)) >= min_gap:
                out.append((x, y) if ga > 0 else (y, x))
    return out


# ----------------------------------------------------------------- streams
def _first_rows(stream: Interactions) -> np.ndarray:
    df = stream.df.assign(row=np.arange(len(stream)))
    return df.groupby("user")["row"].transform("min").to_numpy()


def _short_term(stream: Interactions) -> np.ndarray:
    gt = stream.ground_truth
    w = float(gt["params"]["long_term_weight"])
    if w >= 1:
        raise ValueError("long_term_weight = 1 has no short-term interest to recover")
    trend = float(gt["params"].get("trend_weight", 0.0))
    if trend:
        raise ValueError("the OU check needs trend_weight = 0 (the global trend is not in the ground truth)")
    return (gt["state"] - w * gt["user_long"][stream.users]) / (1.0 - w)


def _days_since_first(stream: Interactions, first: np.ndarray) -> np.ndarray:
    return (stream.timestamps - stream.timestamps[first]) / 86_400


def ou_autocorrelation(stream: Interactions, bin_days: float = 30.0, min_rows: int = 200) -> pd.DataFrame:
    """Per bin of days since a user's first interaction: measured and OU value of ``s(t) . s(t0)``.

    ``measured`` is the mean of ``s_u(t) . s_u(t0)``; ``analytic`` is the mean
    of ``exp(-d / drift_days) |s_u(t0)|^2`` over the same rows (the OU
    conditional expectation); ``correlation`` and ``exp(-d/tau)`` divide both
    by the mean ``|s_u(t0)|^2``; ``se`` is the standard error of
    ``measured - analytic`` clustered by user and ``z`` their ratio. Bins with
    fewer than ``min_rows`` rows are dropped. First interactions (``d = 0``)
    are left out.
    """
    tau = float(stream.ground_truth["params"]["drift_days"])
    s = _short_term(stream)
    first = _first_rows(stream)
    d = _days_since_first(stream, first)
    s0 = s[first]
    dot = np.einsum("nd,nd->n", s, s0)
    n0 = np.einsum("nd,nd->n", s0, s0)
    keep = np.arange(len(stream)) != first
    b = np.floor(d[keep] / bin_days).astype(np.int64)
    df = pd.DataFrame({"bin": b, "d": d[keep], "dot": dot[keep], "n0": n0[keep],
                       "pred": np.exp(-d[keep] / tau) * n0[keep]})
    df["user"] = stream.users[keep]
    df["resid"] = df["dot"] - df["pred"]
    g = df.groupby("bin")
    out = pd.DataFrame({
        "days": (g["bin"].first() + 0.5) * bin_days,
        "n": g.size(),
        "users": g["user"].nunique(),
        "measured": g["dot"].mean(),
        "analytic": g["pred"].mean(),
    })
    # standard error clustered by user (a user's rows share one trajectory)
    per_user = df.groupby(["bin", "user"])["resid"].sum()
    out["se"] = np.sqrt((per_user**2).groupby(level=0).sum()) / out["n"]
    out["z"] = (out["measured"] - out["analytic"]) / out["se"]
    norm = g["n0"].mean()
    out["correlation"] = out["measured"] / norm
    out["exp(-d/tau)"] = out["analytic"] / norm
    return out[out["n"] >= min_rows].reset_index(drop=True)


def drift_cosine(stream: Interactions, bin_days: float = 30.0, horizon: float = 360.0) -> pd.Series:
    """Mean cosine between ``q_u(t)`` and ``q_u(t0)`` per bin of days since the first interaction."""
    q = stream.ground_truth["state"]
    first = _first_rows(stream)
    cos = (q * q[first]).sum(1) / (np.linalg.norm(q, axis=1) * np.linalg.norm(q[first], axis=1))
    bins = pd.cut(_days_since_first(stream, first), np.arange(0, horizon + 1, bin_days))
    curve = pd.Series(cos).groupby(bins, observed=True).mean()
    curve.index = [b.mid for b in curve.index]
    return curve


def drift_cosine_analytic(stream: Interactions, days: np.ndarray) -> np.ndarray:
    """Ratio-of-expectations value of the cosine: ``(w^2 P + (1-w)^2 e^{-d/tau}) / (w^2 P + (1-w)^2)``.

    ``P`` is the mean ``|p_u|^2`` of the ground truth and ``E|s|^2 = 1``
    (the generator's stationary OU variance). The mean of a ratio is not the
    ratio of means, so the measured curve sits a little below it where the
    cosine is far from 1.
    """
    gt = stream.ground_truth
    w, tau = float(gt["params"]["long_term_weight"]), float(gt["params"]["drift_days"])
    P = float((gt["user_long"] ** 2).sum(1).mean())
    rho = np.exp(-np.asarray(days, float) / tau)
    return (w**2 * P + (1 - w) ** 2 * rho) / (w**2 * P + (1 - w) ** 2)


CHOICE_SCORERS = ("oracle", "long-term taste", "common mean", "popularity")


def heldout_choice_ranks(stream: Interactions, test: np.ndarray, batch_size: int = 2048) -> dict[str, np.ndarray]:
    """Rank of each held-out choice under four scorers, over the generator's own choice set.

    ``test`` is a boolean mask (or row indices) of ``stream``'s rows. Each
    scorer ranks every item the user has not chosen *before that row* (the
    set the generator drew from) by ``v_i . x / temperature + b_i`` with
    ``x`` = the true state ``q_u(t)`` (``oracle``), ``w p_u`` (``long-term
    taste``), ``w m`` (``common mean``) or 0 (``popularity``: ``b_i`` alone).
    Returns the rank (1 = top) per test row for each scorer.
    """
    gt = stream.ground_truth
    V, b = gt["item_vectors"], gt["item_bias"]
    w, temp = float(gt["params"]["long_term_weight"]), float(gt["params"]["temperature"])
    rows = np.flatnonzero(test) if np.asarray(test).dtype == bool else np.asarray(test, np.int64)
    # position of each (user, item) in the user's history (stream rows are sorted by time)
    order = np.lexsort((np.arange(len(stream)), stream.users))
    pos = np.empty(len(stream), np.int64)
    counts = np.bincount(stream.users, minlength=stream.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos[order] = np.arange(len(stream)) - np.repeat(starts, counts)
    seen = SeenItems.from_pairs(stream.users, stream.items, stream.n_users, stream.n_items)
    key_pos = pd.Series(pos, index=stream.users.astype(np.int64) * stream.n_items + stream.items)
    key_pos = key_pos.groupby(level=0).min().reindex(seen.keys).to_numpy()
    states = {
        "oracle": lambda r: gt["state"][r],
        "long-term taste": lambda r: w * gt["user_long"][stream.users[r]],
        "common mean": lambda r: np.broadcast_to(w * gt["common_mean"], (len(r), V.shape[1])),
        "popularity": lambda r: np.zeros((len(r), V.shape[1])),
    }
    out = {k: np.empty(len(rows), np.int64) for k in CHOICE_SCORERS}
    for s in range(0, len(rows), batch_size):
        r = rows[s : s + batch_size]
        u, target = stream.users[r].astype(np.int64), stream.items[r].astype(np.int64)
        # items chosen before this row: in the user's history at an earlier position
        lo = np.searchsorted(seen.keys, u * stream.n_items)
        hi = np.searchsorted(seen.keys, (u + 1) * stream.n_items)
        n = hi - lo
        rr = np.repeat(np.arange(len(r)), n)
        idx = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
        before = key_pos[idx] < pos[r][rr]
        excl = np.zeros((len(r), stream.n_items), bool)
        excl[rr[before], (seen.keys[idx] - u[rr] * stream.n_items)[before]] = True
        for name in CHOICE_SCORERS:
            logits = states[name](r) @ V.T / temp + b
            t = logits[np.arange(len(r)), target][:, None]
            ge = (logits >= t) & ~excl
            ge[np.arange(len(r)), target] = False
            out[name][s : s + len(r)] = 1 + ge.sum(1)
    return out


# ---------------------------------------------------------------- catalogue
def spectrum_slope(beta: np.ndarray, skip: int = 0) -> float:
    """Least-squares slope of ``log sigma_k`` on ``log k`` for the centred matrix ``beta``.

    A variance decaying as ``k^-a`` along the coordinates gives singular
    values ``~ k^(-a/2)``: slope ``-1/2`` for :func:`item_catalogue`'s
    default ``spectrum_decay = 1``. ``skip`` leaves out the first components.
    """
    m = np.asarray(beta, np.float64)
    sv = np.linalg.svd(m - m.mean(0), compute_uv=False)
    k = np.arange(1, len(sv) + 1)[skip:]
    return float(np.polyfit(np.log(k), np.log(sv[skip:]), 1)[0])



# ------------------------------------------------------- methods and segments
METHODS = ("Popularity", "BiasedMF", "ItemKNN", "EASE", "MF")


def tune_item_models(train: Interactions, val: Interactions, knn_k=(20, 50, 200), ease_lam=(100.0, 300.0, 1000.0),
                     k: int = 10) -> dict:
    """ItemKNN and EASE^R tuned on validation HR@``k`` (full catalogue, returning users, training items left out).

    Returns ``{"ItemKNN": TuneResult, "EASE": TuneResult}``
    (:func:`rec_lib.models.tune_on_validation`); each grid has the same
    number of points (the same tuning budget).
    """
    from rec_lib.evaluation import full_ranks
    from rec_lib.metrics import recall_at_k
    from rec_lib.models import EASE, ItemKNN, tune_on_validation

    warm = val.subset(np.isin(val.users, np.unique(train.users)))
    excl = SeenItems.from_interactions(train)

    def fit(m):
        return m.fit(train.users, train.items)

    def score(m):
        return recall_at_k(full_ranks(m.score_all, warm.users, warm.items, exclude=excl), k)

    nu, ni = train.n_users, train.n_items
    return {
        "ItemKNN": tune_on_validation(lambda k_: ItemKNN(nu, ni, k=k_), {"k_": list(knn_k)}, fit, score),
        "EASE": tune_on_validation(lambda lam: EASE(nu, ni, lam=lam), {"lam": list(ease_lam)}, fit, score),
    }


def fit_factor_models(train: Interactions, seed: int, dim: int = 32, epochs: int = 10, lr: float = 5e-3,
                      weight_decay: float = 1e-5, device="cpu") -> dict:
    """The chapter's BPR ``MF`` and a ``BiasedMF`` (mean-user prior) trained on ``train`` with one seed.

    Training negatives are drawn among the items the user has **not**
    interacted with in ``train`` (never from validation or test: the items a
    user will choose later stay eligible as negatives, as they would be in
    production). Both models see the same hyper-parameters.
    """
    from rec_lib.models import MF, BiasedMF, fit_pairs
    from rec_lib.utils import seed_everything

    seen = SeenItems.from_interactions(train)
    seeds = seed_everything(seed)
    mf = MF(train.n_users, train.n_items, dim=dim).to(device)
    fit_pairs(mf, train.users, train.items, seen, seeds, loss="bpr", epochs=epochs, lr=lr,
              weight_decay=weight_decay, device=device, desc=f"MF seed {seed}")
    mf.eval()
    seeds = seed_everything(seed)
    bmf = BiasedMF(train.n_users, train.n_items, dim=dim, generator=seeds.torch_gen).to(device)
    bmf.fit(train.users, train.items, seeds, seen=seen, loss="bpr", epochs=epochs, lr=lr,
            weight_decay=weight_decay, device=device, desc=f"BiasedMF seed {seed}")
    return {"MF": mf, "BiasedMF": bmf}


def user_share_units(users: np.ndarray, flag: np.ndarray, centre: float = 0.5) -> np.ndarray:
    """Per-user units whose mean is ``share of rows with flag - centre`` (for a bootstrap over users).

    A row's ``flag`` must be constant within its user (e.g. "new user").
    ``x_u = (n_u / mean n) (flag_u - centre)``, so resampling users keeps
    each user's rows together (a cluster bootstrap).
    """
    users, flag = np.asarray(users), np.asarray(flag, float)
    u, inv, n = np.unique(users, return_inverse=True, return_counts=True)
    f = np.zeros(len(u))
    f[inv] = flag
    return n / n.mean() * (f - centre)


def hit_table(ranks: Mapping[str, Mapping[str, np.ndarray]], labels: pd.DataFrame, k: int = 10,
              by: str = "user_segment") -> pd.DataFrame:
    """HR@``k`` per method, protocol and segment: ``ranks[method][protocol]`` are per-row ranks.

    ``labels`` comes from :func:`rec_lib.evaluation.segment_labels` (same
    rows). Returns a tidy frame: ``method``, ``protocol``, the ``by`` segment
    (``"all"`` included), ``n``, ``share`` and ``hr``.
    """
    from rec_lib.evaluation import segment_table

    out = []
    for method, per in ranks.items():
        for protocol, r in per.items():
            t = segment_table(labels.assign(hr=(np.asarray(r) <= k).astype(float)), "hr", by=(by,))
            out.append(t.assign(method=method, protocol=protocol))
    return pd.concat(out, ignore_index=True)[["method", "protocol", by, "n", "share", "hr"]]

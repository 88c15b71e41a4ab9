"""DiPS's case studies: a learned policy transferred to GRU4Rec (Fig. 2a), GRU4Rec sessions
augmented with sketch items (Fig. 2b), and the sketch of one user over time (Fig. 3).

Sketch *trajectories* are ``[B, T, K]`` tensors: the positions in each user's
sequence held by the sketch after step ``t`` (``-1`` = empty slot), as
recorded by :func:`rec_lib.sketching.training.evaluate_sketching`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from rec_lib.data.schema import Interactions
from rec_lib.metrics import rank_in_catalogue
from rec_lib.models import GRU4Rec
from rec_lib.models.training import minibatches
from rec_lib.sketching.training import SequenceBatch
from rec_lib.utils import Seeds, progress

__all__ = ["sketch_inputs", "history_inputs", "gru_ranks", "SessionSketchGRU", "session_rows", "fit_session_sketch",
           "session_ranks", "policy_visualisation", "sketch_contributions", "user_recall", "recall_mrr", "trajectory", "policy_transfer",
           "session_augmentation", "on_every_split"]


def recall_mrr(ranks: torch.Tensor, k: int = 20) -> dict[str, float]:
    """Recall@k and MRR@k of ranks."""
    r = ranks.float()
    return {f"recall@{k}": float((r <= k).float().mean()),
            f"mrr@{k}": float(torch.where(r <= k, 1.0 / r, torch.zeros_like(r)).mean())}


def _ordered(items: torch.Tensor, pos: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Items at positions ``pos`` ``[N, S]`` (``-1`` = none) in time order, right-padded with ``pad``; lengths."""
    key = torch.where(pos < 0, torch.full_like(pos, torch.iinfo(torch.long).max), pos)
    pos = pos.gather(1, key.argsort(dim=1, stable=True))
    valid = pos >= 0
    seq = torch.where(valid, items.gather(1, pos.clamp(min=0)), torch.full_like(pos, pad))
    return seq, valid.sum(1)


def _step_rows(batch: SequenceBatch, first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(user row, step t) of every step ``t >= first`` with a next item ``x_{t+1}``."""
    T = batch.items.shape[1]
    t = torch.arange(T)
    ok = (t[None, :] >= first) & (t[None, :] + 1 < batch.lengths[:, None].cpu())
    b, t = ok.nonzero(as_tuple=True)
    return b, t


def user_recall(ranks: torch.Tensor, rows: torch.Tensor, n_users: int, k: int = 20) -> np.ndarray:
    """Recall@k per user (the mean hit over the user's scored steps; NaN for a user without one)."""
    hits = (ranks.float() <= k).double().cpu()
    num = torch.bincount(rows, weights=hits, minlength=n_users)
    den = torch.bincount(rows, minlength=n_users).double()
    return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(num, float("nan"))).numpy()


def sketch_inputs(batch: SequenceBatch, trajectory: torch.Tensor, pad: int) -> tuple[torch.Tensor, ...]:
    """GRU inputs for Fig. 2a: at each step ``t``, the ``K`` sketch items in time order; and the target ``x_{t+1}``.

    Returns ``(seqs [N, K], lengths [N], targets [N])`` over all (user, step) pairs.
    """
    b, t = _step_rows(batch)
    items = batch.items.cpu()
    seq, lengths = _ordered(items[b], trajectory[b, t], pad)
    return seq, lengths, items[b, t + 1]


def history_inputs(batch: SequenceBatch, pad: int) -> tuple[torch.Tensor, ...]:
    """GRU inputs with the whole history ``x_{1..t}`` (``K = infinity``), as :func:`sketch_inputs`."""
    b, t = _step_rows(batch)
    items = batch.items.cpu()
    T = items.shape[1]
    pos = torch.arange(T)[None, :].expand(len(b), T)
    pos = torch.where(pos <= t[:, None], pos, torch.full_like(pos, -1))
    seq, lengths = _ordered(items[b], pos, pad)
    return seq, lengths, items[b, t + 1]


@torch.no_grad()
def gru_ranks(model: GRU4Rec, seqs: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
              chunk: int = 2048, device: torch.device | str = "cpu") -> torch.Tensor:
    """Rank of each target among all items after the GRU reads ``seqs`` (rows with no item get the zero state)."""
    model.eval()
    out = []
    for s in range(0, len(seqs), chunk):
        sq, ln = seqs[s : s + chunk].to(device), lengths[s : s + chunk]
        h = model.final_state(sq, ln.clamp(min=1))
        h = torch.where((ln > 0).to(h.device)[:, None], h, torch.zeros_like(h))
        out.append(rank_in_catalogue(model.scores(h).cpu(), targets[s : s + chunk]))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


class SessionSketchGRU(nn.Module):
    """Fig. 2b's modified GRU4Rec: one GRU over the current session's items, one over the sketch items,
    their final states concatenated into the output layer. An empty input gives the zero state.
    """

    def __init__(self, n_items: int, dim: int = 32, hidden: int = 64):
        super().__init__()
        self.session = GRU4Rec(n_items, dim, hidden)
        self.sketch = GRU4Rec(n_items, dim, hidden)
        self.pad, self.n_items = n_items, n_items
        self.out = nn.Linear(2 * hidden, n_items)

    @staticmethod
    def _state(enc: GRU4Rec, seqs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if seqs.shape[1] == 0:
            return torch.zeros(len(seqs), enc.hidden, device=seqs.device)
        h = enc.final_state(seqs, lengths.clamp(min=1))
        return torch.where((lengths > 0).to(h.device)[:, None], h, torch.zeros_like(h))

    def forward(self, sess: torch.Tensor, sess_len: torch.Tensor, sk: torch.Tensor, sk_len: torch.Tensor) -> torch.Tensor:
        """Scores ``[N, n_items]``."""
        h = torch.cat([self._state(self.session, sess, sess_len), self._state(self.sketch, sk, sk_len)], dim=-1)
        return self.out(h)


def session_rows(batch: SequenceBatch, trajectory: torch.Tensor | None, session_len: int, pad: int) -> dict[str, torch.Tensor]:
    """Fig. 2b's examples: each target ``x_t`` (``t >= 1``) with the items of its session before it
    (sessions of ``session_len`` consecutive items, 0 to ``session_len - 1`` of them) and the sketch kept
    at the end of the previous session (``trajectory`` at step ``s0 - 1``; ``None``: ``K = 0``).
    """
    if session_len < 1:
        raise ValueError(f"session_len must be >= 1, got {session_len}")
    items = batch.items.cpu()
    T = items.shape[1]
    t = torch.arange(T)
    ok = (t[None, :] >= 1) & (t[None, :] < batch.lengths[:, None].cpu())
    b, t = ok.nonzero(as_tuple=True)
    s0 = (t // session_len) * session_len
    offs = torch.arange(session_len - 1)
    pos = s0[:, None] + offs[None, :]
    pos = torch.where(pos < t[:, None], pos, torch.full_like(pos, -1))
    sess, sess_len = _ordered(items[b], pos, pad)
    if trajectory is None:
        sk, sk_len = torch.full((len(b), 0), pad, dtype=torch.long), torch.zeros(len(b), dtype=torch.long)
    else:
        prev = trajectory[b, (s0 - 1).clamp(min=0)]
        prev = torch.where((s0 > 0)[:, None], prev, torch.full_like(prev, -1))
        sk, sk_len = _ordered(items[b], prev, pad)
    return {"sess": sess, "sess_len": sess_len, "sk": sk, "sk_len": sk_len, "target": items[b, t]}


def fit_session_sketch(model: SessionSketchGRU, rows: dict[str, torch.Tensor], seeds: Seeds, epochs: int = 8,
                       batch_size: int = 256, lr: float = 5e-3, device: torch.device | str = "cpu",
                       desc: str = "session GRU") -> list[float]:
    """Train on ``rows`` (from :func:`session_rows`) with the cross-entropy over all items; mean loss per epoch."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    model.train()
    n = len(rows["target"])
    for _ in progress(range(epochs), desc=desc):
        total = 0.0
        for b in minibatches(n, batch_size, seeds.torch_gen):
            scores = model(rows["sess"][b].to(device), rows["sess_len"][b], rows["sk"][b].to(device), rows["sk_len"][b])
            loss = nn.functional.cross_entropy(scores, rows["target"][b].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        history.append(total / n)
    model.eval()
    return history


@torch.no_grad()
def session_ranks(model: SessionSketchGRU, rows: dict[str, torch.Tensor], chunk: int = 2048,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Rank of each row's target among all items."""
    model.eval()
    out = []
    for s in range(0, len(rows["target"]), chunk):
        sl = slice(s, s + chunk)
        scores = model(rows["sess"][sl].to(device), rows["sess_len"][sl], rows["sk"][sl].to(device), rows["sk_len"][sl])
        out.append(rank_in_catalogue(scores.cpu(), rows["target"][sl]))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def sketch_contributions(model, batch: SequenceBatch, trajectory: torch.Tensor, alpha: float,
                         inner_loss: str = "mean") -> torch.Tensor:
    """What each sketch item did for the next item's score ``[B, T, K]`` (implicit feedback).

    With one inner step (eq. 7) on the sketch ``S_t``, the adapted user
    vector moves by ``-alpha w sum_j grad l_j`` (``w = 1 / |S_t|`` for the mean
    loss, 1 for the sum), and to first order the score of ``x_{t+1}`` moves
    by ``sum_j c_j`` with ``c_j = alpha w J_x^T (J_j - sum_i p_i J_i)`` (the
    cross-entropy gradient ``grad l_j = sum_i p_i J_i - J_j``, all at
    ``Theta(u)``). ``c_j > 0``: item ``j`` of the sketch pushed the next
    item up. ``0`` on empty slots and on steps without a next item.
    """
    from rec_lib.sketching.inner import inner_gradients

    g = inner_gradients(model, explicit=False, create_graph=False)
    items = batch.items.cpu()
    B, T, K = trajectory.shape
    pos = trajectory.clamp(min=0)
    sk_items = items.gather(1, pos.reshape(B, T * K)).reshape(B, T, K)
    nxt = torch.cat([items[:, 1:], torch.zeros(B, 1, dtype=items.dtype)], 1)  # x_{t+1}
    jac = g.jacobian.detach().cpu()
    centred = jac - g.mean_jacobian.detach().cpu()  # J_j - sum_i p_i J_i
    c = torch.einsum("btd,btkd->btk", jac[nxt], centred[sk_items])
    filled = trajectory >= 0
    w = 1.0 / filled.sum(-1, keepdim=True).clamp(min=1) if inner_loss == "mean" else torch.ones(B, T, 1)
    has_next = torch.arange(T)[None, :] + 1 < batch.lengths.cpu()[:, None]
    return torch.where(filled & has_next.unsqueeze(-1), alpha * w * c, torch.zeros_like(c))


def policy_visualisation(batch: SequenceBatch, trajectory: torch.Tensor, step_ranks: torch.Tensor,
                         interactions: Interactions, k: int, steps: int = 15, top: int = 20,
                         user_row: int | None = None,
                         contributions: torch.Tensor | None = None) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Fig. 3: which items sit in the sketch at each of ``steps`` steps, for one user.

    With ``contributions`` (:func:`sketch_contributions`), a cell is 2 when
    its item is in the sketch, the step is a hit, and the item pushed the
    next item's score up the most of the sketch (the item *used* for the
    hit), 1 when it is in the sketch, 0 otherwise.

    The window starts at the first step with a full sketch (``t = k - 1``).
    Without ``user_row``, the user with the most top-``top`` hits in the
    window is shown (the first such user in the batch). Returns the 0/1
    frame (rows: sketch items' titles in order of entry; columns: the item
    to recommend at each step, ``x_{t+1}``), the hit of each column, and the user's row.
    """
    t0 = k - 1
    lengths = batch.lengths.cpu()
    eligible = lengths >= t0 + steps + 1
    if not bool(eligible.any()):
        raise ValueError(f"no user has {t0 + steps + 1} interactions; lower steps (FIG3_STEPS)")
    hits = (step_ranks[:, t0 : t0 + steps] > 0) & (step_ranks[:, t0 : t0 + steps] <= top)
    if user_row is None:
        score = torch.where(eligible, hits.sum(1), torch.full_like(hits.sum(1), -1))
        user_row = int(torch.argmax(score))
    window = trajectory[user_row, t0 : t0 + steps]  # [steps, K] positions
    items = batch.items[user_row].cpu()
    order: list[int] = []
    for row in window.tolist():
        order += [p for p in sorted(q for q in row if q >= 0) if p not in order]
    matrix = np.array([[int(p in row) for row in window.tolist()] for p in order])
    if contributions is not None:
        cw = contributions[user_row, t0 : t0 + steps]  # [steps, K]
        for j, (row, c, hit) in enumerate(zip(window.tolist(), cw, hits[user_row].tolist())):
            best = int(torch.argmax(c))
            if hit and row[best] >= 0 and float(c[best]) > 0:
                matrix[order.index(row[best]), j] = 2
    targets = items[t0 + 1 : t0 + steps + 1].numpy()
    frame = pd.DataFrame(matrix, index=interactions.item_titles(items[order].numpy()),
                         columns=interactions.item_titles(targets))
    return frame, hits[user_row].numpy(), user_row


def trajectory(model, policy, batch: SequenceBatch, cfg, generator: torch.Generator | None = None) -> torch.Tensor:
    """The sketch after every step ``[B, T, K]`` of a method on ``batch`` (deterministic for DiPS)."""
    from rec_lib.sketching.training import evaluate_sketching

    return evaluate_sketching(model, policy, batch, cfg, generator=generator, record=True)["trajectory"]


def _learned(settings, d, artefacts: dict, k: int, repeat: int = 0):
    from rec_lib.sketching.protocol import rebuild

    key = ("implicit", repeat, k, 1, "DiPS")
    if key not in artefacts:
        raise KeyError(f"no DiPS policy for K={k} (implicit, online, repetition {repeat}) among the kept runs")
    return rebuild(settings, "implicit", d.n_items, artefacts[key])


def policy_transfer(settings, d, artefacts: dict, seeds: Seeds, device: torch.device | str = "cpu",
                    repeat: int = 0, per_user: bool = False):
    """Fig. 2a: a GRU4Rec trained on whole histories, tested on the sketch only (DiPS vs reservoir, K in KS, and all).

    Returns ``(table, gru_history)``; the table has one row per (policy, K)
    with Recall@20 and MRR@20 over every step of the test users. ``d`` and
    the DiPS policies are those of repetition ``repeat``. ``per_user`` adds
    a third output: Recall@20 per test user, policy and finite K (for a
    paired bootstrap over users).
    """
    from rec_lib.models import fit_next_item
    from rec_lib.sketching.protocol import sketch_config

    gru = GRU4Rec(d.n_items, settings.gru_dim, settings.gru_hidden).to(device)
    hist = fit_next_item(gru, d.sequences["train"], seeds, max_len=int(d.batches["train"].items.shape[1]),
                         epochs=settings.gru_epochs, batch_size=64, lr=5e-3, device=device, desc="GRU4Rec")
    test = d.batches["test"]
    rows, users = [], []
    b_rows = _step_rows(test)[0]
    seq, ln, tgt = history_inputs(test, gru.pad)
    ranks = gru_ranks(gru, seq, ln, tgt, device=device)
    full = recall_mrr(ranks)
    for policy_name in ("Random", "DiPS"):
        rows.append({"policy": policy_name, "K": np.inf, **full})
    for k in settings.ks:
        model, pol = _learned(settings, d, artefacts, k, repeat)
        for policy_name in ("Random", "DiPS"):
            cfg = sketch_config(settings, "implicit", k, 1, policy_name)
            traj = trajectory(model, pol if cfg.learned else None, test, cfg, seeds.torch_gen)
            seq, ln, tgt = sketch_inputs(test, traj, gru.pad)
            ranks = gru_ranks(gru, seq, ln, tgt, device=device)
            rows.append({"policy": policy_name, "K": float(k), **recall_mrr(ranks)})
            users.append(pd.DataFrame({"user_row": np.arange(len(test)), "policy": policy_name, "K": k,
                                       "recall@20": user_recall(ranks, b_rows, len(test))}))
    if per_user:
        return pd.DataFrame(rows), hist, pd.concat(users, ignore_index=True)
    return pd.DataFrame(rows), hist


def session_augmentation(settings, d, artefacts: dict, seeds: Seeds, device: torch.device | str = "cpu",
                         repeat: int = 0, per_user: bool = False):
    """Fig. 2b: session GRU4Rec (sessions of ``SESSION_LEN`` items) augmented with ``K`` sketch items.

    ``K = 0`` is the session-only model; for each ``K`` in ``KS`` and each
    policy (reservoir, DiPS) a model is trained on the training users'
    sketches and tested on the test users'. One row per (policy, K).
    ``per_user`` adds Recall@20 per test user (policy ``none`` for K = 0).
    """
    from rec_lib.sketching.protocol import sketch_config

    train, test = d.batches["train"], d.batches["test"]
    rows = []

    users = []
    T = test.items.shape[1]
    ok = (torch.arange(T)[None, :] >= 1) & (torch.arange(T)[None, :] < test.lengths[:, None].cpu())
    b_rows = ok.nonzero(as_tuple=True)[0]

    def fit_and_test(tr_traj, te_traj, label, policy_name, k):
        model = SessionSketchGRU(d.n_items, settings.gru_dim, settings.gru_hidden).to(device)
        fit_session_sketch(model, session_rows(train, tr_traj, settings.session_len, d.n_items), seeds,
                           epochs=settings.gru_epochs, device=device, desc=label)
        ranks = session_ranks(model, session_rows(test, te_traj, settings.session_len, d.n_items), device=device)
        users.append(pd.DataFrame({"user_row": np.arange(len(test)), "policy": policy_name, "K": k,
                                   "recall@20": user_recall(ranks, b_rows, len(test))}))
        return recall_mrr(ranks)

    base = fit_and_test(None, None, "session GRU K=0", "none", 0)
    rows += [{"policy": p, "K": 0, **base} for p in ("Random", "DiPS")]
    for k in settings.ks:
        model, pol = _learned(settings, d, artefacts, k, repeat)
        for policy_name in ("Random", "DiPS"):
            cfg = sketch_config(settings, "implicit", k, 1, policy_name)
            p = pol if cfg.learned else None
            tr = trajectory(model, p, train, cfg, seeds.torch_gen)
            te = trajectory(model, p, test, cfg, seeds.torch_gen)
            rows.append({"policy": policy_name, "K": k,
                         **fit_and_test(tr, te, f"session GRU K={k} {policy_name}", policy_name, k)})
    if per_user:
        return pd.DataFrame(rows), pd.concat(users, ignore_index=True)
    return pd.DataFrame(rows)


def on_every_split(study, settings, artefacts: dict, seeds: Seeds, device: torch.device | str = "cpu",
                   first=None) -> tuple:
    """Run a case study on every repetition's user split, each with that repetition's DiPS policies.

    ``study`` is :func:`policy_transfer` or :func:`session_augmentation`
    (called with ``per_user=True``); repetition ``r`` uses the implicit data
    split with seed ``settings.seed + r`` (:func:`~.protocol.prepare_data`;
    ``first`` is repetition 0's data if already prepared). Returns the
    study's outputs, each table concatenated over the splits with a ``split``
    column, any other output as a list by split.
    """
    from rec_lib.sketching.protocol import prepare_data

    outs = []
    for r in range(settings.repeats):
        d = first if r == 0 and first is not None else prepare_data(settings, "implicit", r)
        outs.append(study(settings, d, artefacts, seeds, device, repeat=r, per_user=True))
    merged = []
    for parts in zip(*outs):
        if isinstance(parts[0], pd.DataFrame):
            merged.append(pd.concat([p.assign(split=r) for r, p in enumerate(parts)], ignore_index=True))
        else:
            merged.append(list(parts))
    return tuple(merged)

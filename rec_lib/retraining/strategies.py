"""The retraining strategies of SML's Table 1, all behind one interface.

A strategy has ``pretrain(history)`` (the initial model on ``D_0 .. D_{init_end-1}``),
``update(history)`` (retrain when ``D_t`` has arrived, seeing only
``D_0 .. D_t``) and ``score(users, rows, candidates)`` (the model being
served). :func:`rec_lib.retraining.protocol.run_strategy` drives them.

MF-based (all with the log loss and one sampled negative, eq. 12-13):

* :class:`FullRetrain` -- trains on all data ``D_0 .. D_t``, from ``W_{t-1}``;
* :class:`FineTune` -- trains on ``D_t`` only, from ``W_{t-1}``;
* :class:`SPMF` -- trains on ``D_t`` plus interactions replayed from a
  reservoir of past data (Wang et al. 2018);
* :class:`SMLRetrain` -- SML and its ablations (:class:`SMLUpdater`).

Sequential: :class:`GRU4RecRetrain` (full retraining) and
:class:`CaserFineTune` (fine-tuning), which read the items a user
interacted with before each interaction (:func:`previous_items`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rec_lib.data.sampling import SeenItems
from rec_lib.metrics import rank_in_catalogue, rowwise_spearman
from rec_lib.models import MF, BiasedMF, Caser, GRU4Rec, Popularity, fit_caser, fit_next_item, fit_pairs
from rec_lib.models.mf import mf_score
from rec_lib.data.splits import user_sequences
from rec_lib.retraining.protocol import History, PeriodStream
from rec_lib.retraining.transfer import SMLUpdater
from rec_lib.utils import Seeds

__all__ = [
    "MFConfig",
    "SMLConfig",
    "SeqConfig",
    "pretrain_mf",
    "MFStrategy",
    "FullRetrain",
    "FineTune",
    "Reservoir",
    "SPMF",
    "SMLRetrain",
    "PopularityRetrain",
    "BiasedMFRetrain",
    "cold_start_stats",
    "GRU4RecRetrain",
    "CaserFineTune",
]


@dataclass(frozen=True)
class MFConfig:
    """MF and its training (shared by Full-retrain, Fine-tune, SPMF and SML's initial model)."""

    dim: int = 32
    epochs: int = 5
    pretrain_epochs: int = 20
    lr: float = 1e-2
    weight_decay: float = 0.0
    batch_size: int = 1024
    n_neg: int = 1
    reservoir: int = 7000
    replay: int = 3333
    replay_temperature: float = 0.3


@dataclass(frozen=True)
class SMLConfig:
    """SML's knobs (§4.1.2): transfer architecture and the two steps."""

    filters: tuple[int, ...] = (10, 5)
    fc: int | None = 512
    outer_iters: int = 2
    hat_epochs: int = 2
    theta_epochs: int = 2
    lr_hat: float = 1e-2
    lr_theta: float = 1e-3
    l2_hat: float = 0.0
    l2_theta: float = 0.0
    batch_size: int = 1024
    warm_start: int = 0  # Adam steps fitting the transfer to return w_hat first (0: the paper's random start)


@dataclass(frozen=True)
class SeqConfig:
    """GRU4Rec and Caser."""

    gru_hidden: int = 64
    gru_max_len: int = 50
    gru_epochs: int = 3
    gru_loss: str = "top1"
    gru_lr: float = 5e-3
    caser_L: int = 5
    caser_n_h: int = 16
    caser_n_v: int = 4
    caser_dropout: float = 0.5
    caser_epochs: int = 5
    caser_pretrain_epochs: int = 20
    caser_lr: float = 3e-3
    gru_batch: int = 256
    caser_batch: int = 1024


def pretrain_mf(history: History, cfg: MFConfig, seeds: Seeds, device: torch.device | str = "cpu") -> MF:
    """The initial model: MF trained on ``D_0 .. D_t`` with the log loss (eq. 13), ``pretrain_epochs`` epochs."""
    model = MF(history.n_users, history.n_items, cfg.dim).to(device)
    fit_pairs(model, *history.upto(), history.seen, seeds, loss="bce", epochs=cfg.pretrain_epochs, lr=cfg.lr,
              weight_decay=cfg.weight_decay, batch_size=cfg.batch_size, n_neg=cfg.n_neg, device=device, desc="pretrain")
    return model


@torch.no_grad()
def cold_start_stats(user_rows: torch.Tensor | None, scores: torch.Tensor, popularity: np.ndarray) -> dict[str, float]:
    """How a model treats users it has never seen: how alike their rows are, how popular their picks.

    ``user_rows`` ``[n, d]`` (the rows those users are served with, or
    ``None``), ``scores`` ``[n, n_items]`` (their scores of every item),
    ``popularity`` ``[n_items]`` (interaction counts so far). Returns
    ``cosine`` (mean pairwise cosine of the rows, off the diagonal; NaN for
    fewer than 2 rows or no rows) and ``spearman_pop`` (mean over users of
    the Spearman correlation between a user's scores and item popularity).
    """
    n = scores.shape[0]
    out = {"n": float(n), "cosine": float("nan"), "spearman_pop": float("nan")}
    if n == 0:
        return out
    if user_rows is not None and n >= 2:
        u = F.normalize(user_rows.double(), dim=1)
        c = u @ u.T
        out["cosine"] = float((c.sum() - c.diagonal().sum()) / (n * (n - 1)))
    pop = torch.as_tensor(popularity, dtype=torch.float64)
    rho = rowwise_spearman(scores.double().cpu(), pop + 1e-9 * torch.arange(len(pop)))  # ties broken by id
    out["spearman_pop"] = float(rho.mean())
    return out


class _ColdStartProbe:
    """After each retraining at ``t``, record :func:`cold_start_stats` for the users new at ``t + 1``.

    Only for ``t + 1`` a period that is tested (validation or test); kept in
    :attr:`probe` (``{t + 1: stats}``) and copied into the run's result.
    """

    def _rows_and_scores(self, users: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        raise NotImplementedError

    def record_cold_start(self, history: History) -> None:
        stream, t = history.stream, history.t
        if t + 1 >= stream.n_periods or t + 1 < stream.protocol.val_start:
            return
        first_u, _ = stream.first_periods()
        users_next, _ = stream.arrays(t + 1)
        new = np.unique(users_next[first_u[users_next] == t + 1])
        pop = np.bincount(stream.arrays_upto(t)[1], minlength=stream.data.n_items)
        rows, scores = self._rows_and_scores(torch.as_tensor(new, dtype=torch.long))
        self.__dict__.setdefault("probe", {}).setdefault(t + 1, {}).update(cold_start_stats(rows, scores, pop))

    def record_true_state(self, history: History) -> None:
        """On a stream with a known generator, how well the served scores follow each user's true affinity.

        After retraining at ``t``, for the users of ``t + 1`` (a tested
        period): the Spearman correlation of their served scores of every
        item with :math:`q_u^\\top v_i + b_i`, :math:`q_u` the generator's
        state at the user's first interaction of ``t + 1`` (the state the
        next recommendation should serve). Needs ``ground_truth["row_state"]``
        (:func:`rec_lib.retraining.experiments.returning_stream` attaches it);
        a measurement only, nothing is trained on it. Stored as
        ``probe[t + 1]["true_spearman"]``.
        """
        stream, t = history.stream, history.t
        gt = stream.data.ground_truth or {}
        if "row_state" not in gt or t + 1 >= stream.n_periods or t + 1 < stream.protocol.val_start:
            return
        rows = np.arange(stream.bounds[t + 1], stream.bounds[t + 2])
        users, first = np.unique(stream.data.users[rows], return_index=True)
        ids = stream.data.item_ids
        true = gt["row_state"][rows[first]] @ gt["item_vectors"][ids].T + gt["item_bias"][ids]
        _, scores = self._rows_and_scores(torch.as_tensor(users, dtype=torch.long))
        rho = rowwise_spearman(scores.double().cpu(), torch.as_tensor(true, dtype=torch.float64))
        self.__dict__.setdefault("probe", {}).setdefault(t + 1, {})["true_spearman"] = float(rho.mean())


class MFStrategy(_ColdStartProbe):
    """An MF recommender retrained by fitting the data :meth:`training_data` picks, from ``W_{t-1}``."""

    name = "MF"

    def __init__(self, cfg: MFConfig, seeds: Seeds, device: torch.device | str = "cpu", init: MF | None = None):
        self.cfg, self.seeds, self.device, self.init = cfg, seeds, torch.device(device), init
        self.model: MF | None = None

    def pretrain(self, history: History) -> None:
        self.model = copy.deepcopy(self.init).to(self.device) if self.init is not None else \
            pretrain_mf(history, self.cfg, self.seeds, self.device)

    def training_data(self, history: History) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def update(self, history: History) -> None:
        users, items = self.training_data(history)
        fit_pairs(self.model, users, items, history.seen, self.seeds, loss="bce", epochs=self.cfg.epochs, lr=self.cfg.lr,
                  weight_decay=self.cfg.weight_decay, batch_size=self.cfg.batch_size, n_neg=self.cfg.n_neg,
                  device=self.device, desc=self.name)
        self.record_cold_start(history)
        self.record_true_state(history)

    @torch.no_grad()
    def _rows_and_scores(self, users: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        p = self.model.user.weight[users.to(self.device)]
        return p, p @ self.model.item.weight.T

    @torch.no_grad()
    def score(self, users: torch.Tensor, rows: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        return mf_score(self.model.user.weight, self.model.item.weight, users.to(self.device), cands.to(self.device))


class FullRetrain(MFStrategy):
    """Full retraining: all data ``D_0 .. D_t`` at every period, initialised from ``W_{t-1}``."""

    name = "Full-retrain"

    def training_data(self, history: History) -> tuple[np.ndarray, np.ndarray]:
        return history.upto()


class FineTune(MFStrategy):
    """Fine-tuning: the new data ``D_t`` only, from ``W_{t-1}``."""

    name = "Fine-tune"

    def training_data(self, history: History) -> tuple[np.ndarray, np.ndarray]:
        return history.period(history.t)


class Reservoir:
    """A uniform sample of fixed size of all interactions seen so far (Algorithm R, Vitter 1985).

    :meth:`add` takes a block of interactions in stream order; the result is
    exactly what feeding them one by one to Algorithm R would give: element
    ``k`` (1-based over the whole stream) enters with probability ``size / k``
    and replaces a uniformly chosen slot. Vectorised over the block.
    """

    def __init__(self, size: int, rng: np.random.Generator):
        if size < 1:
            raise ValueError(f"reservoir size must be >= 1, got {size}")
        self.size, self.rng, self.n_seen = size, rng, 0
        self.users = np.empty(0, dtype=np.int64)
        self.items = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.users)

    def add(self, users: np.ndarray, items: np.ndarray) -> None:
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        free = min(self.size - len(self), len(users))
        self.users = np.concatenate([self.users, users[:free]])
        self.items = np.concatenate([self.items, items[:free]])
        rest = np.arange(free, len(users))
        k = self.n_seen + rest + 1  # 1-based positions in the stream
        slot = (self.rng.random(len(rest)) * k).astype(np.int64)  # uniform on {0, .., k-1}
        hit = slot < self.size
        rest, slot = rest[hit], slot[hit]
        last = len(slot) - 1 - np.unique(slot[::-1], return_index=True)[1]  # the later element wins a slot
        self.users[slot[last]], self.items[slot[last]] = users[rest[last]], items[rest[last]]
        self.n_seen += len(users)


class SPMF(MFStrategy):
    """Sample-based retraining (SPMF, Wang et al. 2018): ``D_t`` plus replayed reservoir samples.

    A :class:`Reservoir` of ``cfg.reservoir`` past interactions is kept by
    reservoir sampling. At each retraining, ``cfg.replay`` interactions are
    drawn from it (without replacement) with probability
    ``softmax(r / (n_items * replay_temperature))`` of the rank ``r`` the
    current model gives the interaction's item among all items: what the
    model has started to forget is replayed more often. Then the model is
    trained on ``D_t`` and the replayed sample, and ``D_t`` enters the reservoir.
    """

    name = "SPMF"

    def pretrain(self, history: History) -> None:
        super().pretrain(history)
        self.reservoir = Reservoir(self.cfg.reservoir, self.seeds.rng)
        self.reservoir.add(*history.upto())

    @torch.no_grad()
    def replay_probabilities(self) -> np.ndarray:
        """Sampling probability of each reservoir entry (higher for items the model ranks low)."""
        u = torch.as_tensor(self.reservoir.users, device=self.device)
        i = torch.as_tensor(self.reservoir.items, device=self.device)
        ranks = torch.cat([rank_in_catalogue(self.model.score_all(u[s : s + 4096]), i[s : s + 4096])
                           for s in range(0, len(u), 4096)]).double()
        logits = ranks / (self.model.n_items * self.cfg.replay_temperature)
        return torch.softmax(logits, 0).cpu().numpy()

    def training_data(self, history: History) -> tuple[np.ndarray, np.ndarray]:
        users, items = history.period(history.t)
        n = min(self.cfg.replay, len(self.reservoir))
        pick = self.seeds.rng.choice(len(self.reservoir), size=n, replace=False, p=self.replay_probabilities())
        replay_u, replay_i = self.reservoir.users[pick], self.reservoir.items[pick]
        self.reservoir.add(users, items)  # after drawing: the replay holds past data only
        return np.concatenate([users, replay_u]), np.concatenate([items, replay_i])


class PopularityRetrain(_ColdStartProbe):
    """Popularity: every user gets the items ranked by their interaction counts in ``D_0 .. D_t``.

    The non-personalised control of Table 1 (:class:`rec_lib.models.Popularity`):
    whatever a strategy gains on users it has never seen is read against it.
    """

    name = "Popularity"

    def __init__(self, n_users: int, n_items: int, device: torch.device | str = "cpu"):
        self.model, self.device = Popularity(n_users, n_items), torch.device(device)

    def pretrain(self, history: History) -> None:
        self.model.fit(*history.upto())

    def update(self, history: History) -> None:
        self.model.fit(*history.upto())

    @torch.no_grad()
    def score(self, users: torch.Tensor, rows: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        return self.model(users, cands)


class BiasedMFRetrain(MFStrategy):
    """Full retraining of MF with global, user and item biases; never-seen users get the mean known user.

    :class:`rec_lib.models.BiasedMF` trained with the log loss on ``D_0 .. D_t``
    from its previous weights, ``epochs`` epochs per period (as Full-retrain);
    its own initial model (``pretrain_epochs`` on the initial periods). The
    cold-start control of Table 1: a plain MF gives a new user its random
    initial vector, this one the average known user plus the item biases.
    """

    name = "BiasedMF"

    def pretrain(self, history: History) -> None:
        self.model = BiasedMF(history.n_users, history.n_items, self.cfg.dim, generator=self.seeds.torch_gen)
        self.model.to(self.device)
        self._fit(history, self.cfg.pretrain_epochs)

    def _fit(self, history: History, epochs: int) -> None:
        self.model.fit(*history.upto(), self.seeds, seen=history.seen, loss="bce", epochs=epochs, lr=self.cfg.lr,
                       batch_size=self.cfg.batch_size, weight_decay=self.cfg.weight_decay, n_neg=self.cfg.n_neg,
                       device=self.device, desc=self.name)

    def update(self, history: History) -> None:
        self._fit(history, self.cfg.epochs)
        self.record_cold_start(history)
        self.record_true_state(history)

    @torch.no_grad()
    def _rows_and_scores(self, users: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        users = users.to(self.device)
        return self.model.user_params(users)[0], self.model.score_all(users)

    @torch.no_grad()
    def score(self, users: torch.Tensor, rows: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        return self.model(users.to(self.device), cands.to(self.device))


class SMLRetrain(_ColdStartProbe):
    """SML (or one of its ablations) on the period protocol, driving an :class:`SMLUpdater`.

    The initial MF is ``W_{init_end-1}``; every period's data is a block for
    :meth:`SMLUpdater.update`. For ``SML-S`` the transfer is frozen from the
    first validation period on (:meth:`on_serving`).
    """

    def __init__(self, variant: str, mf: MFConfig, cfg: SMLConfig, seeds: Seeds, device: torch.device | str = "cpu",
                 init: MF | None = None):
        self.name, self.mf, self.cfg, self.seeds, self.device, self.init = variant, mf, cfg, seeds, device, init
        self.updater: SMLUpdater | None = None

    def pretrain(self, history: History) -> None:
        model = self.init if self.init is not None else pretrain_mf(history, self.mf, self.seeds, self.device)
        filters = () if self.name == "SML-CNN" else self.cfg.filters
        fc = None if self.name == "SML-FC" else self.cfg.fc
        self.updater = SMLUpdater(model.user.weight, model.item.weight, history.seen, self.seeds, filters=filters, fc=fc,
                                  variant=self.name, loss="bce", lr_hat=self.cfg.lr_hat, lr_theta=self.cfg.lr_theta,
                                  l2_hat=self.cfg.l2_hat, l2_theta=self.cfg.l2_theta, outer_iters=self.cfg.outer_iters,
                                  hat_epochs=self.cfg.hat_epochs, theta_epochs=self.cfg.theta_epochs,
                                  batch_size=self.cfg.batch_size, n_neg=self.mf.n_neg, device=self.device,
                                  warm_start=self.cfg.warm_start)

    def on_serving(self) -> None:
        if self.name == "SML-S":
            self.updater.freeze_transfer()

    def update(self, history: History) -> None:
        self.updater.seen = history.seen
        self.updater.update(*history.period(history.t))
        self.record_cold_start(history)
        self.record_true_state(history)

    @torch.no_grad()
    def _rows_and_scores(self, users: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        p = self.updater.P[users.to(self.device)]
        return p, p @ self.updater.Q.T

    def score(self, users: torch.Tensor, rows: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        return self.updater.score(users, cands)


class _Sequential:
    """Shared by the sequential baselines: windows of previous items for every row of the stream."""

    def __init__(self, stream_windows: np.ndarray, cfg: SeqConfig, seeds: Seeds, device: torch.device | str = "cpu"):
        self.windows = torch.as_tensor(stream_windows)
        self.cfg, self.seeds, self.device = cfg, seeds, torch.device(device)


class GRU4RecRetrain(_Sequential):
    """GRU4Rec (Hidasi et al. 2016), fully retrained at every period (from the previous weights).

    Trains on each user's sequence of ``D_0 .. D_t`` (the last ``gru_max_len``
    items); scores a test interaction from the GRU state after the user's
    previous ``gru_max_len`` items (the output bias alone when there are none).
    ``stream_windows`` is :func:`previous_items` with ``L = gru_max_len``.
    """

    name = "GRU4Rec"

    def __init__(self, stream_windows, n_items: int, dim: int, cfg: SeqConfig, seeds: Seeds, device="cpu"):
        super().__init__(stream_windows, cfg, seeds, device)
        self.model = GRU4Rec(n_items, dim=dim, hidden=cfg.gru_hidden).to(self.device)

    def _fit(self, history: History) -> None:
        seqs = user_sequences(history.interactions())
        fit_next_item(self.model, seqs, self.seeds, max_len=self.cfg.gru_max_len, epochs=self.cfg.gru_epochs,
                      batch_size=self.cfg.gru_batch, lr=self.cfg.gru_lr, loss=self.cfg.gru_loss, device=self.device,
                      desc=self.name)
        self.model.eval()

    pretrain = update = _fit

    @torch.no_grad()
    def score(self, users: torch.Tensor, rows: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        win = self.windows[rows].long()  # [B, L] left-padded, oldest first
        pad, L = self.model.pad, win.shape[1]
        lengths = (win != pad).sum(1)
        shift = (L - lengths)[:, None]
        seqs = torch.where(torch.arange(L)[None, :] < lengths[:, None],
                           win.gather(1, (torch.arange(L)[None, :] + shift).clamp(max=L - 1)), pad)  # right-padded
        h = torch.zeros(len(rows), self.model.hidden, device=self.device)
        has = lengths > 0
        if has.any():
            h[has.to(self.device)] = self.model.final_state(seqs[has].to(self.device), lengths[has])
        return self.model.scores(h, cands.to(self.device))


class CaserFineTune(_Sequential):
    """Caser (Tang & Wang 2018), fine-tuned on ``D_t`` at every period (pretrained on the initial periods).

    Each training interaction is ``(user, previous L items) -> item``; the
    window may reach into earlier periods (input only). ``stream_windows`` is
    :func:`previous_items` with ``L = caser_L``.
    """

    name = "Caser"

    def __init__(self, stream_windows, n_users: int, n_items: int, dim: int, cfg: SeqConfig, seeds: Seeds, device="cpu"):
        super().__init__(stream_windows, cfg, seeds, device)
        self.model = Caser(n_users, n_items, dim=dim, L=cfg.caser_L, n_h=cfg.caser_n_h, n_v=cfg.caser_n_v,
                           dropout=cfg.caser_dropout).to(self.device)

    def _fit(self, history: History, rows: np.ndarray, epochs: int) -> None:
        users, items = history.stream.data.users[rows], history.stream.data.items[rows]
        fit_caser(self.model, users, self.windows[rows].numpy(), items, history.seen, self.seeds, epochs=epochs,
                  batch_size=self.cfg.caser_batch, lr=self.cfg.caser_lr, device=self.device, desc=self.name)

    def pretrain(self, history: History) -> None:
        self._fit(history, history.rows_upto(), self.cfg.caser_pretrain_epochs)

    def update(self, history: History) -> None:
        self._fit(history, history.rows(history.t), self.cfg.caser_epochs)

    @torch.no_grad()
    def score(self, users: torch.Tensor, rows: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return self.model(users.to(self.device), self.windows[rows].long().to(self.device), cands.to(self.device))

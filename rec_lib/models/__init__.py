"""Shared base recommenders: MF, NCF (NeuMF), GRU4Rec, Caser, their losses and training loops,
and the simple baselines of :mod:`rec_lib.models.baselines` (popularity, biased MF, ItemKNN, EASE^R)."""

from rec_lib.models.baselines import EASE, BiasedMF, ItemKNN, Popularity, TuneResult, interaction_matrix, tune_on_validation
from rec_lib.models.caser import Caser, fit_caser
from rec_lib.models.gru4rec import GRU4Rec
from rec_lib.models.losses import bce_loss, bpr_loss, bpr_max_loss, mse_loss, sampled_softmax_loss, top1_loss
from rec_lib.models.mf import MF, mf_score
from rec_lib.models.ncf import NCF
from rec_lib.models.training import fit_next_item, fit_pairs, fit_ratings, minibatches, pair_batches

__all__ = [
    "MF", "mf_score", "NCF", "GRU4Rec", "Caser", "fit_caser",
    "bpr_loss", "bce_loss", "mse_loss", "sampled_softmax_loss", "top1_loss", "bpr_max_loss",
    "fit_pairs", "fit_ratings", "fit_next_item", "minibatches", "pair_batches",
    "Popularity", "BiasedMF", "ItemKNN", "EASE", "tune_on_validation", "TuneResult", "interaction_matrix",
]

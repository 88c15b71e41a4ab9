"""Datasets in one schema, with the filters, splits and samplers the chapters share.

Quick tour::

    from rec_lib import data
    ml = data.load("ml-100k")                       # Interactions (user, item, rating, timestamp)
    implicit = data.k_core(data.to_implicit(ml, 4), 20)
    train, val, test = data.split_by_time(ml, (0.7, 0.1, 0.2))
    seen = data.SeenItems.from_interactions(ml)
    cands = data.candidate_sets(test.users, test.items, 499, seen, rng)
    stream = data.drifting_stream(n_users=500, seed=0)
"""

from rec_lib.data.errors import ChecksumError, DatasetError, DatasetFormatError, DatasetNotFoundError
from rec_lib.data.filters import drop_repeats, k_core, min_user_interactions, to_implicit
from rec_lib.data.registry import DatasetSpec, dataset_available, get_spec, list_datasets, load, register
from rec_lib.data.sampling import SeenItems, candidate_sets, sample_negatives, training_negatives
from rec_lib.data.schema import COLUMNS, Interactions
from rec_lib.data.splits import (
    Sequences,
    assign_periods,
    calendar_periods,
    split_by_time,
    split_periods,
    split_user_items,
    split_users,
    user_sequences,
)
from rec_lib.data.stats import PowerLawFit, ccdf, fit_power_law
from rec_lib.data.synthetic import Catalogue, catalogue_sessions, drifting_stream, item_catalogue, power_law_counts

from rec_lib.data import movielens as _movielens  # noqa: E402,F401  (registers ml-100k)
from rec_lib.data import loaders as _loaders  # noqa: E402,F401  (registers the papers' datasets)
from rec_lib.data.loaders import adressa_periods, loader_options  # noqa: E402

__all__ = [
    "COLUMNS", "Interactions", "DatasetSpec", "register", "get_spec", "list_datasets", "load",
    "dataset_available", "DatasetError", "DatasetNotFoundError", "DatasetFormatError", "ChecksumError",
    "to_implicit", "k_core", "drop_repeats", "min_user_interactions",
    "split_users", "split_by_time", "assign_periods", "calendar_periods", "split_periods",
    "split_user_items", "Sequences", "user_sequences",
    "SeenItems", "sample_negatives", "candidate_sets", "training_negatives",
    "drifting_stream", "power_law_counts", "Catalogue", "item_catalogue", "catalogue_sessions",
    "PowerLawFit", "fit_power_law", "ccdf", "adressa_periods", "loader_options",
]

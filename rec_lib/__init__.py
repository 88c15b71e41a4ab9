"""rec_lib: the library behind the book *Recommender systems, reproduced*.

Every model, training loop, metric and data loader the chapters use lives
here; the notebooks in ``book/`` only derive, call, tabulate and plot.

Modules, one per problem (each holds a paper's method beside its baselines):

- :mod:`rec_lib.data`: dataset registry, loaders, filters, splits, negative
  sampling, synthetic generators with known ground truth.
- :mod:`rec_lib.metrics`: RMSE, Recall/HR@k, MRR@k, NDCG@k.
- :mod:`rec_lib.models`: shared base recommenders (MF, NCF, GRU4Rec).
- :mod:`rec_lib.ledger`: the results ledger and the claims helper.
- :mod:`rec_lib.config`: scale presets (``smoke``/``tutorial``/``paper``).
- :mod:`rec_lib.utils`: seeding, device choice, progress bars, timing.
- :mod:`rec_lib.plotting`: the one plotting style of the book.
- :mod:`rec_lib.numerics`: pinned kernels and threads (same seed, same numbers).
- :mod:`rec_lib.evidence`: typed claims with paired intervals (the claims tables).
"""

__version__ = "0.1.0"

# Pin the numerics before anything computes (rec_lib.numerics explains each setting).
from rec_lib import numerics as _numerics  # noqa: E402

_numerics.pin()

from rec_lib.paths import repo_root, data_dir, raw_dir, cache_dir, results_dir  # noqa: E402,F401

"""Shared set-up of the SML (retraining) unit tests: the period protocol, small settings and stream."""

from rec_lib import data
from rec_lib.retraining import PeriodProtocol, make_stream

PROTO = PeriodProtocol("count", n_periods=8, init_end=3, val_start=5, test_start=6)
#: settings small enough for a unit test: every strategy trains in a second or two
SMALL = dict(n_seeds=1, n_neg=20, n_periods=8, init_end=3, val_start=5, test_start=6, dim=8, epochs=2,
             pretrain_epochs=3, batch_size=256, fc=16, outer_iters=2, workers=1)


def small_stream():
    """60 users and 90 items drifting over 8 periods (seed 1)."""
    return make_stream(data.drifting_stream(n_users=60, n_items=90, dim=4, max_interactions=40, seed=1), PROTO)

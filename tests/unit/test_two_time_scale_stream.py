"""The chapter's synthetic stream: no padded candidate sets, a control without personal taste, bucket ceilings."""

import numpy as np
import pytest

from rec_lib.two_time_scale import stream
from rec_lib.two_time_scale.protocol import prepare


def test_stream_refuses_sizes_that_pad_and_has_no_padding():
    with pytest.raises(ValueError, match="padded"):
        stream.two_scale_stream(n_users=50, n_items=100, max_interactions=60, n_neg_eval=50)
    s = stream.two_scale_stream(n_users=60, n_items=200, max_interactions=80, n_neg_eval=99, seed=3)
    d = prepare(s)
    assert stream.padded_share(d, 99) == 0.0
    assert stream.padded_share(d, 200) == 1.0  # nobody has 200 unseen items out of 200


def test_control_stream_has_no_personal_taste():
    s = stream.two_scale_stream(n_users=40, n_items=200, max_interactions=50, n_neg_eval=99, user_spread=0.0)
    long = s.ground_truth["user_long"]
    assert np.allclose(long, long[0])


def test_bucket_ceilings():
    t = stream.bucket_ceilings({"oracle": np.array([1, 2, 4, 1])}, np.array([0, 0, 5, 20]), [0, 1, 10])
    assert t.set_index("T_low")["mrr"].to_dict() == pytest.approx({0: 0.75, 1: 0.25, 10: 1.0})

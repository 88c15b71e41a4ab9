import numpy as np
import torch

from rec_lib import data, evaluation


class Oracle(torch.nn.Module):
    """Scores the true item of each user highest."""

    def __init__(self, truth: dict[int, int], n_items: int):
        super().__init__()
        self.table = torch.zeros(max(truth) + 1, n_items)
        for u, i in truth.items():
            self.table[u, i] = 1.0

    def forward(self, users, items):
        return self.table[users.unsqueeze(-1), items] if items.ndim == 2 else self.table[users, items]

    def score_all(self, users):
        return self.table[users]


def test_sampled_and_full_ranks_of_an_oracle(rng):
    truth = {u: (u * 3) % 40 for u in range(20)}
    users, items = np.array(list(truth)), np.array(list(truth.values()))
    seen = data.SeenItems.from_pairs(users, items, 20, 40)
    oracle = Oracle(truth, 40)
    assert (evaluation.sampled_ranks(oracle, users, items, 10, seen, rng, batch_size=7) == 1).all()
    assert (evaluation.full_ranks(oracle.score_all, users, items, batch_size=6) == 1).all()
    out = evaluation.evaluate_sampled(oracle, users, items, 10, seen, rng, ks=(1,))
    assert out == {"recall@1": 1.0, "ndcg@1": 1.0}


def test_full_ranks_excludes_seen_items():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.0]])
    seen = data.SeenItems.from_pairs(np.array([0]), np.array([0]), 1, 4)
    r = evaluation.full_ranks(lambda u: scores, np.array([0]), np.array([1]), exclude=seen)
    assert r.tolist() == [1]
    r = evaluation.full_ranks(lambda u: scores, np.array([0]), np.array([1]))
    assert r.tolist() == [2]

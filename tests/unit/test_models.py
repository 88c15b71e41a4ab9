import numpy as np
import pytest
import torch

from rec_lib import data, models
from rec_lib.models import losses
from rec_lib.utils import seed_everything


def test_mf_shapes_and_bias():
    torch.manual_seed(0)
    m = models.MF(5, 7, dim=3, bias=True)
    u, i = torch.tensor([0, 1]), torch.tensor([2, 3])
    assert m(u, i).shape == (2,)
    assert m(u, torch.tensor([[0, 1, 2], [3, 4, 5]])).shape == (2, 3)
    full = m.score_all(u)
    assert full.shape == (2, 7)
    assert torch.allclose(full[torch.arange(2), i], m(u, i), atol=1e-6)
    assert torch.allclose(models.mf_score(m.user.weight, m.item.weight, u, i), (m.user(u) * m.item(i)).sum(-1))
    with pytest.raises(ValueError):
        models.MF(0, 5)


def test_ncf_scores_agree_across_call_forms():
    torch.manual_seed(0)
    m = models.NCF(6, 9, dim_gmf=4, dim_mlp=4, layers=(8, 4))
    u = torch.tensor([0, 5])
    full = m.score_all(u)
    assert full.shape == (2, 9)
    assert torch.allclose(m(u, torch.tensor([3, 7])), full[torch.arange(2), torch.tensor([3, 7])], atol=1e-6)
    cand = torch.tensor([[1, 2], [3, 4]])
    assert torch.allclose(m(u, cand), full.gather(1, cand), atol=1e-6)
    vec = m.user_vector(u).detach().requires_grad_(True)
    s = m.score_with_user(vec, torch.tensor([1, 2])).sum()
    (g,) = torch.autograd.grad(s, vec)
    assert g.shape == (2, m.user_dim) and g.abs().sum() > 0
    assert models.NCF(3, 3, explicit=True).offset is not None


def test_gru4rec_states_and_losses():
    torch.manual_seed(0)
    g = models.GRU4Rec(10, dim=4, hidden=6)
    seqs = torch.tensor([[1, 2, 3, g.pad], [4, 5, g.pad, g.pad]])
    lengths = torch.tensor([3, 2])
    h = g.hidden_states(seqs, lengths)
    assert h.shape == (2, 4, 6) and torch.all(h[1, 2:] == 0)
    last = g.final_state(seqs, lengths)
    assert torch.allclose(last[0], h[0, 2]) and torch.allclose(last[1], h[1, 1])
    assert g.scores(last).shape == (2, 10)
    assert g.scores(last, torch.tensor([[1, 2, 3], [4, 5, 6]])).shape == (2, 3)
    for name in ("ce", "bpr", "top1", "bpr-max"):
        loss = g.next_item_loss(seqs, lengths, loss=name, n_neg=5, generator=torch.Generator().manual_seed(0))
        assert loss.ndim == 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="loss must be"):
        g.next_item_loss(seqs, lengths, loss="hinge")
    with pytest.raises(ValueError, match="at least one item"):
        g.hidden_states(seqs, torch.tensor([3, 0]))


def test_gru4rec_state_ignores_padding():
    torch.manual_seed(0)
    g = models.GRU4Rec(10, dim=4, hidden=6)
    a = g.final_state(torch.tensor([[1, 2, g.pad]]), torch.tensor([2]))
    b = g.final_state(torch.tensor([[1, 2]]), torch.tensor([2]))
    assert torch.allclose(a, b, atol=1e-6)


def test_losses_on_hand_values():
    pos, neg = torch.tensor([2.0]), torch.tensor([0.0])
    assert losses.bpr_loss(pos, neg).item() == pytest.approx(-np.log(1 / (1 + np.exp(-2))))
    assert losses.bce_loss(pos, neg).item() == pytest.approx(-np.log(1 / (1 + np.exp(-2))) + np.log(2))
    assert losses.bpr_loss(pos, torch.tensor([[0.0, 0.0]])).item() == pytest.approx(losses.bpr_loss(pos, neg).item())
    assert losses.sampled_softmax_loss(torch.tensor([0.0]), torch.tensor([[0.0, 0.0, 0.0]])).item() == pytest.approx(np.log(4))
    assert losses.mse_loss(torch.tensor([1.0, 3.0]), torch.tensor([1, 1])).item() == pytest.approx(2.0)
    assert losses.top1_loss(torch.tensor([0.0]), torch.tensor([[0.0]])).item() == pytest.approx(1.0)
    assert losses.bpr_max_loss(torch.tensor([10.0]), torch.tensor([[0.0, 0.0]]), reg=0.0).item() < 1e-3


@pytest.fixture
def stream():
    return data.drifting_stream(n_users=60, n_items=80, dim=4, max_interactions=40, long_term_weight=1.0, seed=0)


@pytest.mark.parametrize("loss,n_neg", [("bpr", 1), ("bce", 1), ("softmax", 1), ("softmax", 5)])
def test_fit_pairs_lowers_loss(stream, loss, n_neg):
    seeds = seed_everything(0)
    m = models.MF(stream.n_users, stream.n_items, 8)
    seen = data.SeenItems.from_interactions(stream)
    hist = models.fit_pairs(m, stream.users, stream.items, seen, seeds, loss=loss, epochs=8, lr=0.05, batch_size=256,
                            n_neg=n_neg)
    assert hist[-1] < hist[0]
    with pytest.raises(ValueError, match="loss must be"):
        models.fit_pairs(m, stream.users, stream.items, seen, seeds, loss="hinge")


def test_fit_ratings_and_next_item_lower_loss(stream):
    seeds = seed_everything(0)
    m = models.NCF(stream.n_users, stream.n_items, 4, 4, (8,), explicit=True)
    ratings = np.linspace(1, 5, len(stream))
    hist = models.fit_ratings(m, stream.users, stream.items, ratings, seeds, epochs=5, lr=0.05, batch_size=128)
    assert hist[-1] < hist[0]
    g = models.GRU4Rec(stream.n_items, 8, 8)
    hist = models.fit_next_item(g, data.user_sequences(stream), seeds, epochs=4, lr=0.02, batch_size=16)
    assert hist[-1] < hist[0]


def test_fit_pairs_softmax_is_the_offer_set_cross_entropy(stream):
    """The first epoch's loss of an untrained all-zero MF is log(1 + n_neg): a uniform softmax over the offer set."""
    seeds = seed_everything(0)
    m = models.MF(stream.n_users, stream.n_items, 4)
    torch.nn.init.zeros_(m.user.weight), torch.nn.init.zeros_(m.item.weight)
    opt = torch.optim.SGD(m.parameters(), lr=0.0)
    hist = models.fit_pairs(m, stream.users, stream.items, data.SeenItems.from_interactions(stream), seeds,
                            loss="softmax", n_neg=7, epochs=1, optimizer=opt)
    assert hist[0] == pytest.approx(np.log(8), rel=1e-6)


def test_training_is_deterministic(stream):
    def run():
        seeds = seed_everything(7)
        m = models.MF(stream.n_users, stream.n_items, 4)
        models.fit_pairs(m, stream.users, stream.items, data.SeenItems.from_interactions(stream), seeds, epochs=2)
        return m.user.weight.detach().clone()

    assert torch.equal(run(), run())


def test_minibatches():
    batches = list(models.minibatches(10, 4, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4, 2] and sorted(torch.cat(batches).tolist()) == list(range(10))
    with pytest.raises(ValueError):
        list(models.minibatches(10, 0))


def test_pair_batches_cover_rows_with_unseen_negatives(stream):
    seeds = seed_everything(0)
    seen = data.SeenItems.from_interactions(stream)
    batches = list(models.pair_batches(stream.users, seen, seeds, batch_size=100, n_neg=3))
    rows = torch.cat([b for b, _ in batches])
    assert sorted(rows.tolist()) == list(range(len(stream)))
    assert all(neg.shape == (len(b), 3) for b, neg in batches)
    for b, neg in batches:
        assert not seen.contains(stream.users[b.numpy()][:, None], neg.numpy()).any()
    with pytest.raises(ValueError, match="at least one positive"):
        next(models.pair_batches(np.array([], dtype=np.int64), seen, seeds))


def _ncf_concat_reference(m, user_vec, items):
    """NeuMF written with the concatenations (He et al.'s form), to check the factored one."""
    ug, um = user_vec[..., : m.dim_gmf], user_vec[..., m.dim_gmf :]
    if items is None:
        ig = m.item_gmf.weight.unsqueeze(0).expand(len(user_vec), -1, -1)
        im = m.item_mlp.weight.unsqueeze(0).expand(len(user_vec), -1, -1)
    else:
        ig, im = m.item_gmf(items), m.item_mlp(items)
    if ig.ndim == ug.ndim + 1:
        ug = ug.unsqueeze(-2).expand(*ig.shape[:-1], -1)
        um = um.unsqueeze(-2).expand(*im.shape[:-1], -1)
    h = m.mlp(torch.cat([um, im], dim=-1))
    s = m.out(torch.cat([ug * ig, h], dim=-1)).squeeze(-1)
    return s + m.offset if m.offset is not None else s


@pytest.mark.parametrize("layers", [(8, 4), (6,), ()])
def test_ncf_factored_scores_equal_concatenated_form(layers):
    torch.manual_seed(0)
    m = models.NCF(4, 11, dim_gmf=3, dim_mlp=5, layers=layers, explicit=True, init_std=0.5)
    with torch.no_grad():
        m.offset.fill_(0.3)
    vec = torch.randn(4, m.user_dim, dtype=torch.float32)
    for items in (None, torch.tensor([1, 2, 3, 10]), torch.tensor([[0, 1], [2, 3], [4, 5], [9, 10]])):
        got, ref = m.score_with_user(vec, items), _ncf_concat_reference(m, vec, items)
        assert got.shape == ref.shape
        assert torch.allclose(got, ref, atol=1e-5)
    # gradients w.r.t. the user vector agree too (DiPS's inner loop differentiates them)
    v1 = vec.clone().requires_grad_(True)
    v2 = vec.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(m.score_with_user(v1).pow(2).sum(), v1)
    (g2,) = torch.autograd.grad(_ncf_concat_reference(m, v2, None).pow(2).sum(), v2)
    assert torch.allclose(g1, g2, atol=1e-4)

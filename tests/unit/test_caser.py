import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rec_lib import data
from rec_lib.models import Caser, fit_caser
from rec_lib.utils import seed_everything


def test_caser_shapes_and_call_forms():
    torch.manual_seed(0)
    m = Caser(5, 9, dim=4, L=3, n_h=2, n_v=3, dropout=0.0).eval()
    u = torch.tensor([0, 4])
    w = torch.tensor([[1, 2, 3], [m.pad, m.pad, 7]])
    x = m.sequence_vector(u, w)
    assert x.shape == (2, 8)
    assert torch.allclose(x[:, 4:], m.user.weight[u])  # [z; P_u]
    single = m(u, w, torch.tensor([3, 5]))
    many = m(u, w, torch.tensor([[3, 1], [5, 0]]))
    assert single.shape == (2,) and many.shape == (2, 2)
    assert torch.allclose(many[:, 0], single, atol=1e-6)


def test_caser_matches_a_hand_computation():
    """z = ReLU(fc([vertical conv; max-pooled ReLU(horizontal conv)])) written out by hand."""
    torch.manual_seed(1)
    m = Caser(3, 6, dim=2, L=2, n_h=1, n_v=1, dropout=0.0).eval()
    u, w = torch.tensor([1]), torch.tensor([[2, 4]])
    E = m.item.weight[w[0]]  # [L, d]
    v = (m.conv_v.weight[0, 0, :, 0][:, None] * E).sum(0) + m.conv_v.bias[0]  # [d]
    hs = []
    for h, conv in zip((1, 2), m.conv_h):
        vals = [F.relu((conv.weight[0, 0] * E[s : s + h]).sum() + conv.bias[0]) for s in range(2 - h + 1)]
        hs.append(torch.stack(vals).max())
    z = F.relu(m.fc(torch.cat([v, torch.stack(hs)])))
    expected = (torch.cat([z, m.user.weight[1]]) * m.out.weight[3]).sum() + m.out_bias.weight[3, 0]
    assert torch.allclose(m(u, w, torch.tensor([3])), expected.reshape(1), atol=1e-6)


def test_caser_padding_embedding_is_zero_and_gradients_flow():
    torch.manual_seed(0)
    m = Caser(4, 6, dim=3, L=2, n_h=2, n_v=2, dropout=0.0)
    assert torch.all(m.item.weight[m.pad] == 0)
    s = m(torch.tensor([0, 1]), torch.tensor([[m.pad, 1], [2, 3]]), torch.tensor([4, 5])).sum()
    s.backward()
    assert m.item.weight.grad[m.pad].abs().sum() == 0
    for name in ("user", "fc", "out", "conv_v"):
        assert getattr(m, name).weight.grad.abs().sum() > 0, name


def test_caser_rejects_bad_input():
    with pytest.raises(ValueError, match="n_h \\+ n_v"):
        Caser(3, 3, n_h=0, n_v=0)
    with pytest.raises(ValueError, match="dropout"):
        Caser(3, 3, dropout=1.0)
    m = Caser(3, 3, dim=2, L=2)
    with pytest.raises(ValueError, match="windows"):
        m.sequence_vector(torch.tensor([0]), torch.tensor([[1, 2, 0]]))


def test_fit_caser_lowers_loss():
    stream = data.drifting_stream(n_users=60, n_items=80, dim=4, max_interactions=40, long_term_weight=0.3, seed=0)
    seeds = seed_everything(0)
    m = Caser(stream.n_users, stream.n_items, dim=8, L=3, n_h=4, n_v=2, dropout=0.2)
    rng = np.random.default_rng(0)
    windows = rng.integers(0, stream.n_items + 1, size=(len(stream), 3))
    seen = data.SeenItems.from_interactions(stream)
    hist = fit_caser(m, stream.users, windows, stream.items, seen, seeds, epochs=6, lr=0.01, batch_size=256)
    assert len(hist) == 6 and hist[-1] < hist[0]
    with pytest.raises(ValueError, match="loss must be"):
        fit_caser(m, stream.users, windows, stream.items, seen, seeds, loss="hinge")
    with pytest.raises(ValueError, match="equal length"):
        fit_caser(m, stream.users, windows[:3], stream.items, seen, seeds)


def test_horizontal_filters_equal_conv2d():
    """The unfolded matmul of sequence_vector gives what Conv2d over the L x d image gives."""
    torch.manual_seed(2)
    m = Caser(3, 7, dim=4, L=4, n_h=3, n_v=0, dropout=0.0).eval()
    u, w = torch.tensor([0, 2]), torch.tensor([[1, 2, 3, 4], [m.pad, 5, 6, 0]])
    E = m.item(w).unsqueeze(1)
    pooled = [F.relu(conv(E).squeeze(3)).max(dim=2).values for conv in m.conv_h]
    z = F.relu(m.fc(torch.cat(pooled, 1)))
    assert torch.allclose(m.sequence_vector(u, w)[:, :4], z, atol=1e-6)

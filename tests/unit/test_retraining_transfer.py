"""SML's transfer network (eq. 3-7) and its two training steps (eq. 8-11)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rec_lib import data
from rec_lib.models import mf_score
from rec_lib.retraining import (
    SMLTask,
    SMLTransfer,
    SMLUpdater,
    TransferCNN,
    apply_transfer,
    block_batches,
    meta_gradients,
    step1_learn_hat,
    step2_learn_transfer,
    transfer_scores,
    transferred_rows,
)
from rec_lib.utils import seed_everything


def test_stack_layer_by_hand():
    net = TransferCNN(3, filters=(2,), fc=4)
    prev, hat = torch.tensor([[3.0, 0.0, 4.0]]), torch.tensor([[1.0, 2.0, -1.0]])
    H0 = net.stack(prev, hat)
    assert H0.shape == (1, 3, 3)
    assert torch.equal(H0[0, 0], prev[0]) and torch.equal(H0[0, 1], hat[0])
    assert torch.allclose(H0[0, 2], torch.tensor([3.0, 0.0, -4.0]) / 5.0)  # w_prev * w_hat / ||w_prev||


@pytest.mark.parametrize("filters,fc", [((10, 5), 512), ((4,), 8), ((), 8), ((6, 3), None), ((10, 5, 5), 16)])
def test_transfer_shapes(filters, fc):
    net = TransferCNN(7, filters, fc)
    out = net(torch.randn(11, 7), torch.randn(11, 7))
    assert out.shape == (11, 7)
    assert len(net.convs) == len(filters) and (net.fc is None) == (fc is None)


def test_transfer_forward_matches_equations():
    """eq. 5-7 written out: H1 = GELU(F1 H0), H2 = GELU(F2 H1), z = GELU(W_f^T flat + b1), w = W_o^T z + b2."""
    torch.manual_seed(0)
    net = TransferCNN(4, (3, 2), fc=5)
    prev, hat = torch.randn(6, 4), torch.randn(6, 4)
    H0 = net.stack(prev, hat)  # [N, 3, d]
    F1 = net.convs[0].weight[:, 0, :, 0]  # [3 filters, 3 rows]
    F2 = net.convs[1].weight[:, :, 0, 0]  # [2, 3]
    H1 = F.gelu(torch.einsum("jc,ncd->njd", F1, H0))
    H2 = F.gelu(torch.einsum("kj,njd->nkd", F2, H1))
    z = F.gelu(H2.flatten(1) @ net.fc.weight.T + net.fc.bias)
    w = z @ net.out.weight.T + net.out.bias
    assert torch.allclose(net(prev, hat), w, atol=1e-6)
    # the first layer is literally a 3x1 convolution over the 3 x d image
    conv = F.conv2d(H0.unsqueeze(1), net.convs[0].weight)
    assert torch.allclose(conv[:, :, 0, :], torch.einsum("jc,ncd->njd", F1, H0), atol=1e-6)
    assert torch.equal(net.first_filters, F1.detach())


def test_transfer_gradients_match_finite_differences():
    torch.manual_seed(0)
    net = TransferCNN(3, (2, 2), fc=4).double()
    prev = torch.randn(2, 3, dtype=torch.double)
    hat = torch.randn(2, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h: net(prev, h), (hat,))
    for name in ("convs.0.weight", "fc.weight", "out.bias"):  # and w.r.t. the parameters Theta
        p0 = dict(net.named_parameters())[name].detach().clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda p: torch.func.functional_call(net, {name: p}, (prev, hat.detach())), (p0,))


def test_transfer_bad_input():
    with pytest.raises(ValueError, match=">= 1"):
        TransferCNN(0)
    with pytest.raises(ValueError, match=">= 1"):
        TransferCNN(4, filters=(0,))
    net = TransferCNN(4, filters=())
    with pytest.raises(ValueError, match="no convolution"):
        net.first_filters
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        net(torch.randn(2, 4), torch.randn(2, 3))
    with pytest.raises(ValueError, match="at least one"):
        SMLTransfer({})


def _setup(seed=0, n_users=6, n_items=9, d=4):
    torch.manual_seed(seed)
    transfer = SMLTransfer({"user": d, "item": d}, filters=(3, 2), fc=8)
    task = SMLTask({"user": torch.randn(n_users, d), "item": torch.randn(n_items, d)})
    g = torch.Generator().manual_seed(seed)
    batches = [(torch.randint(0, n_users, (16,), generator=g), torch.randint(0, n_items, (16,), generator=g),
                torch.randint(0, n_items, (16, 1), generator=g)) for _ in range(3)]
    return transfer, task, batches


def test_task_starts_from_prev_and_checks_groups():
    prev = {"user": torch.ones(2, 3), "item": torch.zeros(4, 3)}
    task = SMLTask(prev)
    assert torch.equal(task.hat["user"], prev["user"]) and task.hat["user"] is not prev["user"]
    assert task.hat_optimizer(0.1) is task.hat_optimizer(0.1)
    with pytest.raises(ValueError, match="learning rate"):
        task.hat_optimizer(0.0)
    with pytest.raises(ValueError, match="groups"):
        SMLTask(prev, hat={"user": torch.ones(2, 3)})


def test_transferred_rows_and_scores():
    transfer, task, _ = _setup()
    idx = torch.tensor([[0, 3], [3, 5]])
    rows = transferred_rows(transfer, task, "item", idx)
    full = transfer("item", task.prev["item"], task.hat["item"])
    assert rows.shape == (2, 2, 4) and torch.allclose(rows, full[idx], atol=1e-6)
    assert torch.equal(transferred_rows(transfer, task, "item", idx, through_transfer=False), task.hat["item"][idx])
    W = apply_transfer(transfer, task)
    u, i, j = torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([[4, 5], [6, 7]])
    pos, neg = transfer_scores(transfer, task, u, i, j)
    assert torch.allclose(pos, mf_score(W["user"], W["item"], u, i), atol=1e-5)
    assert torch.allclose(neg, mf_score(W["user"], W["item"], u, j), atol=1e-5)
    chunked = apply_transfer(transfer, task, chunk=2)
    assert all(torch.allclose(chunked[g], W[g], atol=1e-6) for g in W)


def test_step1_changes_only_w_hat_and_lowers_its_loss():
    transfer, task, batches = _setup()
    theta = [p.detach().clone() for p in transfer.parameters()]
    hat0 = {g: w.detach().clone() for g, w in task.hat.items()}
    losses = [step1_learn_hat(transfer, task, batches, lr=0.05, l2=1e-3) for _ in range(15)]
    assert all(torch.equal(a, b) for a, b in zip(theta, transfer.parameters()))  # Theta exactly unchanged
    assert all(p.requires_grad for p in transfer.parameters())  # unfrozen afterwards
    assert not torch.equal(task.hat["user"], hat0["user"])
    assert torch.equal(task.prev["user"], hat0["user"])  # W_{t-1} is a constant
    assert losses[-1] < losses[0]


def test_step2_changes_only_theta_and_lowers_its_loss():
    transfer, task, batches = _setup()
    hat0 = {g: w.detach().clone() for g, w in task.hat.items()}
    theta0 = [p.detach().clone() for p in transfer.parameters()]
    opt = torch.optim.Adam(transfer.parameters(), lr=0.01)
    losses = [step2_learn_transfer(transfer, task, batches, opt) for _ in range(15)]
    assert all(torch.equal(task.hat[g], hat0[g]) for g in hat0)  # W_hat exactly unchanged
    assert any(not torch.equal(a, b) for a, b in zip(theta0, transfer.parameters()))
    assert losses[-1] < losses[0]


def test_steps_reject_empty_streams_and_unknown_losses():
    transfer, task, batches = _setup()
    with pytest.raises(ValueError, match="no mini-batch"):
        step1_learn_hat(transfer, task, [])
    with pytest.raises(ValueError, match="no mini-batch"):
        step2_learn_transfer(transfer, task, [], torch.optim.SGD(transfer.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="loss must be"):
        step1_learn_hat(transfer, task, batches, loss="hinge")
    # a callable loss (e.g. BPR written by the caller) is accepted
    step1_learn_hat(transfer, task, batches, loss=lambda p, n: -F.logsigmoid(p - n.squeeze(-1)).mean())


@pytest.fixture
def stream():
    return data.drifting_stream(n_users=40, n_items=60, dim=4, max_interactions=30, seed=0)


def test_block_batches_cover_each_epoch(stream):
    seen = data.SeenItems.from_interactions(stream)
    out = list(block_batches(stream.users[:50], stream.items[:50], seen, seed_everything(0), epochs=2, batch_size=16))
    assert sum(len(u) for u, _, _ in out) == 100
    assert all(j.shape == (len(u), 1) for u, _, j in out)
    with pytest.raises(ValueError, match="equal length"):
        list(block_batches(stream.users[:5], stream.items[:4], seen, seed_everything(0)))


def test_block_batches_with_given_negatives(stream):
    u, i = stream.users[:50], stream.items[:50]
    neg = (i + 1) % stream.n_items
    out = list(block_batches(u, i, None, seed_everything(0), epochs=2, batch_size=16, negatives=neg))
    assert sum(len(b) for b, _, _ in out) == 100
    for users, pos, j in out:  # each positive keeps its own negative, in every pass
        assert j.shape == (len(users), 1) and torch.equal(j[:, 0], (pos + 1) % stream.n_items)
    with pytest.raises(ValueError, match="seen"):
        list(block_batches(u, i, None, seed_everything(0)))


def test_updater_uses_the_blocks_own_negatives(stream):
    """With negatives given, no `seen` is needed and the result differs from sampled negatives only by them."""
    torch.manual_seed(0)
    P0, Q0 = 0.1 * torch.randn(stream.n_users, 4), 0.1 * torch.randn(stream.n_items, 4)
    blocks = np.array_split(np.arange(len(stream)), 3)
    negs = [np.random.default_rng(k).integers(0, stream.n_items, len(b)) for k, b in enumerate(blocks)]

    def run():
        torch.manual_seed(1)
        upd = SMLUpdater(P0, Q0, None, seed_everything(0), filters=(3, 2), fc=8, loss="bpr", batch_size=64)
        for b, n in zip(blocks, negs):
            upd.update(stream.users[b], stream.items[b], n)
        return upd

    a, b = run(), run()
    assert torch.equal(a.P, b.P) and torch.equal(a.Q, b.Q) and len(a.log) == 3 and "step2" in a.log[1]
    with pytest.raises(ValueError, match="negatives"):
        a.update(stream.users[:5], stream.items[:5])
    with pytest.raises(ValueError, match="one row per positive"):
        a.update(stream.users[:5], stream.items[:5], negs[0][:4])


def _updater(stream, variant="SML", seed=0):
    seen = data.SeenItems.from_interactions(stream)
    torch.manual_seed(seed)
    P0, Q0 = 0.1 * torch.randn(stream.n_users, 4), 0.1 * torch.randn(stream.n_items, 4)
    return SMLUpdater(P0, Q0, seen, seed_everything(seed), filters=(3, 2), fc=8, variant=variant, outer_iters=2,
                      batch_size=64)


def test_updater_runs_algorithms_1_and_2(stream):
    upd = _updater(stream)
    blocks = np.array_split(np.arange(len(stream)), 4)
    P_before = upd.P.clone()
    for b in blocks:
        upd.update(stream.users[b], stream.items[b])
    assert len(upd.log) == 4 and "step2" not in upd.log[0]  # the first block opens a task only
    assert all(len(e["step2"]) == 2 and len(e["step1_prev"]) == 1 for e in upd.log[1:])
    assert upd.P.shape == P_before.shape and not torch.equal(upd.P, P_before)
    assert upd.score(torch.tensor([0, 1]), torch.tensor([[0, 1, 2], [3, 4, 5]])).shape == (2, 3)


def test_frozen_transfer_is_not_updated(stream):
    upd = _updater(stream, "SML-S")
    blocks = np.array_split(np.arange(len(stream)), 3)
    upd.update(stream.users[blocks[0]], stream.items[blocks[0]])
    upd.freeze_transfer()
    theta = [p.detach().clone() for p in upd.transfer.parameters()]
    for b in blocks[1:]:
        upd.update(stream.users[b], stream.items[b])
    assert all(torch.equal(a, b) for a, b in zip(theta, upd.transfer.parameters()))
    assert all("step2" not in e for e in upd.log)


def test_sml_n_trains_the_transfer_without_the_next_block(stream):
    """SML-N replaces D_{t+1} by D_t in step 2: its Theta cannot depend on the new block; SML's does."""
    blocks = np.array_split(np.arange(len(stream)), 3)

    def theta_after(variant, last):
        upd = _updater(stream, variant)
        upd.update(stream.users[blocks[0]], stream.items[blocks[0]])
        upd.update(stream.users[last], stream.items[last])
        return torch.cat([p.detach().flatten() for p in upd.transfer.parameters()])

    assert torch.equal(theta_after("SML-N", blocks[1]), theta_after("SML-N", blocks[2]))
    assert not torch.equal(theta_after("SML", blocks[1]), theta_after("SML", blocks[2]))


def test_updater_rejects_bad_input(stream):
    seen = data.SeenItems.from_interactions(stream)
    P0, Q0 = torch.zeros(stream.n_users, 4), torch.zeros(stream.n_items, 4)
    with pytest.raises(ValueError, match="variant"):
        SMLUpdater(P0, Q0, seen, seed_everything(0), variant="SML-X")
    with pytest.raises(ValueError, match="users / "):
        SMLUpdater(P0[:3], Q0, seen, seed_everything(0))
    with pytest.raises(ValueError, match="outer_iters"):
        SMLUpdater(P0, Q0, seen, seed_everything(0), outer_iters=0)
    with pytest.raises(ValueError, match="loss"):
        SMLUpdater(P0, Q0, seen, seed_everything(0), loss="hinge")
    upd = SMLUpdater(P0, Q0, seen, seed_everything(0), fc=8)
    with pytest.raises(ValueError, match="non-zero"):
        upd.update(np.array([], dtype=np.int64), np.array([], dtype=np.int64))


def test_meta_gradients_first_order_is_exact_without_a_step():
    transfer, task, batches = _setup()
    exact, first = meta_gradients(transfer, task, batches[0], batches[1], step=0.0)
    assert exact.shape == first.shape == (sum(p.numel() for p in transfer.parameters()),)
    assert torch.allclose(exact, first, atol=1e-6)  # W_hat' = W_hat does not depend on Theta
    gaps = []
    for step in (0.01, 0.1, 1.0):  # the second-order terms appear with a step, and grow with it
        exact, first = meta_gradients(transfer, task, batches[0], batches[1], step=step)
        gaps.append(float((exact - first).norm() / exact.norm()))
    assert 0 < gaps[0] < gaps[1] < gaps[2]
    assert all(torch.equal(task.hat[g], task.prev[g]) for g in task.hat)  # nothing was updated

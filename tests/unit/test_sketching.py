"""rec_lib.sketching (DiPS): projection layer, policy, inner loop, baselines, Algorithm 1, case studies, protocol."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from rec_lib import data as rdata
from rec_lib.config import SettingsError
from rec_lib.models import NCF
from rec_lib.sketching import baselines, case_studies, inner, policy, projection, protocol, training
from rec_lib.sketching.training import SequenceBatch, SketchConfig
from rec_lib.utils import seed_everything


# ------------------------------------------------------------------------------------- fixtures
def _toy_batch(explicit: bool, B: int = 6, T: int = 12, M: int = 15, seed: int = 0) -> SequenceBatch:
    g = torch.Generator().manual_seed(seed)
    items = torch.stack([torch.randperm(M, generator=g)[:T] for _ in range(B)])
    lengths = torch.randint(T - 4, T + 1, (B,), generator=g)
    lengths[0] = T
    ratings = torch.randint(1, 6, (B, T), generator=g).float()
    valid = torch.arange(T)[None, :] < lengths[:, None]
    items, ratings = items * valid, ratings * valid
    targets = ratings if explicit else valid.float()
    values = ratings / 5 if explicit else valid.float()
    return SequenceBatch(items, targets, values, lengths, np.arange(B))


def _toy_model(explicit: bool, M: int = 15, seed: int = 0):
    torch.manual_seed(seed)
    model = training.make_base_model(M, explicit, dim=3, layers=(5,), mean_rating=3.0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim:
                p.normal_(0, 0.3)
    return model


# ------------------------------------------------------------------------------------ projection
def test_top_k_projection_sums_to_k_and_respects_the_mask():
    torch.manual_seed(0)
    x = torch.randn(5, 9, dtype=torch.float64)
    x[1, [0, 3]] = float("-inf")
    for k in (1, 3, 6):
        u = projection.top_k_projection(x, k)
        assert torch.allclose(u.sum(-1), torch.full((5,), float(k), dtype=torch.float64), atol=1e-9)
        assert ((u > 0) & (u < 1))[0].all()
        assert u[1, 0] == 0 and u[1, 3] == 0
    # the largest scores get the largest weights, and a steep input approaches the hard top-k
    u = projection.top_k_projection(1000 * x[:1], 3)
    hard = projection.hard_top_k(x[:1], torch.ones_like(x[:1], dtype=torch.bool), 3)
    assert torch.allclose(u, hard, atol=1e-3)


def test_top_k_projection_gradient_matches_finite_differences():
    torch.manual_seed(1)
    x = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: projection.top_k_projection(v, 3), (x,), eps=1e-6, atol=1e-6)
    # masked entries: gradient zero there, still correct elsewhere
    mask = torch.tensor([[True] * 5 + [False] * 2] * 3)
    f = lambda v: projection.top_k_projection(v.masked_fill(~mask, float("-inf")), 2)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-6)
    (g,) = torch.autograd.grad(f(x)[:, 0].sum(), x)
    assert torch.all(g[:, 5:] == 0)
    # the implicit-function formula: d mu / d x = D - D 1 1^T D / 1^T D 1 for one row
    u = projection.top_k_projection(x[0].detach(), 3)
    d = u * (1 - u)
    jac = torch.autograd.functional.jacobian(lambda v: projection.top_k_projection(v, 3), x[0].detach())
    assert torch.allclose(jac, torch.diag(d) - torch.outer(d, d) / d.sum(), atol=1e-8)


def test_top_k_projection_rows_without_a_choice_and_errors():
    x = torch.tensor([[1.0, float("-inf"), 2.0, float("-inf")]], requires_grad=True)
    u = projection.top_k_projection(x, 2)
    assert torch.equal(u, torch.tensor([[1.0, 0.0, 1.0, 0.0]]))
    (g,) = torch.autograd.grad(u.sum(), x)
    assert torch.all(g == 0)
    with pytest.raises(ValueError, match="NaN"):
        projection.top_k_projection(torch.tensor([[float("nan"), 1.0]]), 1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        projection.top_k_projection(torch.randn(2, 3), 0)
    with pytest.raises(ValueError, match="shape"):
        projection.top_k_projection(torch.randn(2, 0), 1)


def test_masked_softmax_hard_top_k_and_straight_through():
    s = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    p = projection.masked_softmax(s, mask)
    assert torch.allclose(p[0, :2], torch.softmax(torch.tensor([1.0, 2.0]), 0)) and p[0, 2] == 0
    assert torch.all(p[1] == 0)
    assert torch.equal(projection.hard_top_k(s, mask, 1), torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    soft = torch.tensor([0.2, 0.7, 0.1], requires_grad=True)
    hard = torch.tensor([0.0, 1.0, 0.0])
    w = projection.straight_through(hard, soft)
    assert torch.equal(w.detach(), hard)  # forward: the hard choice
    (g,) = torch.autograd.grad((w * torch.tensor([1.0, 2.0, 3.0])).sum(), soft)
    assert torch.equal(g, torch.tensor([1.0, 2.0, 3.0]))  # backward: the soft one
    with pytest.raises(ValueError, match="differ"):
        projection.straight_through(hard, soft[:2])


# ---------------------------------------------------------------------------------------- policy
def test_sparse_policy_equals_the_dense_mlp_on_the_sketch():
    torch.manual_seed(0)
    M = 10
    f = policy.SketchPolicy(M, hidden=4, init_std=0.5)
    items = torch.tensor([[1, 4, 7, 0], [2, 3, 0, 0]])
    values = torch.tensor([[0.2, 1.0, 0.6, 0.0], [0.4, 0.8, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    sparse = f(items, values, mask)
    zy = torch.zeros(2, M)
    for b in range(2):
        for s in range(4):
            if mask[b, s]:
                zy[b, items[b, s]] = values[b, s]
    dense = f.dense(zy)
    for b in range(2):
        for s in range(4):
            if mask[b, s]:
                assert torch.allclose(sparse[b, s], dense[b, items[b, s]], atol=1e-6)
            else:
                assert sparse[b, s] == float("-inf")
    with pytest.raises(ValueError, match="share a shape"):
        f(items, values[:, :2], mask)
    with pytest.raises(ValueError):
        policy.SketchPolicy(0)


def test_intermediate_slots_and_compaction():
    slots = torch.tensor([[0, 2], [1, -1]])
    cand, mask = policy.intermediate_slots(slots, t=4, tau=2, lengths=torch.tensor([10, 4]))
    assert torch.equal(cand, torch.tensor([[0, 2, 3, 4], [1, -1, 3, -1]]))
    assert torch.equal(mask, cand >= 0)
    keep = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]])
    assert torch.equal(policy.compact_slots(cand, keep, 2), torch.tensor([[0, 4], [1, 3]]))
    assert torch.equal(policy.compact_slots(cand, torch.tensor([[0.0, 0, 0, 1], [0, 0, 0, 0]]), 2),
                       torch.tensor([[4, -1], [-1, -1]]))
    with pytest.raises(ValueError):
        policy.intermediate_slots(slots, t=0, tau=2, lengths=torch.tensor([10, 4]))


def test_select_forward_is_the_hard_choice_and_backward_the_soft_one():
    torch.manual_seed(0)
    scores = torch.randn(4, 5, requires_grad=True)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[3, 3:] = False  # row 3: only 3 occupied slots, nothing to decide for k = 4
    # online: remove the most likely item
    keep = policy.select(scores, mask, k=4, tau=1)
    removed = scores.detach().argmax(-1)
    for b in range(3):
        assert keep[b].sum() == 4 and keep[b, removed[b]] == 0
    assert torch.equal(keep[3].detach(), mask[3].float())
    # backward of the online choice = backward of mask - softmax
    w = torch.randn(4, 5)
    (g,) = torch.autograd.grad((keep * w).sum(), scores)
    (g_ref,) = torch.autograd.grad(((mask.float() - projection.masked_softmax(scores, mask)) * w)[:3].sum(), scores)
    assert torch.allclose(g, g_ref, atol=1e-6)
    # batch: keep the top k; backward = Top-K projection
    keep_b = policy.select(scores, torch.ones(4, 5, dtype=torch.bool), k=2, tau=3)
    top2 = scores.detach().topk(2, -1).indices
    assert torch.allclose(keep_b.detach().gather(1, top2), torch.ones(4, 2))
    assert torch.allclose(keep_b.detach().sum(-1), torch.full((4,), 2.0))
    (g,) = torch.autograd.grad((keep_b * w).sum(), scores)
    (g_ref,) = torch.autograd.grad((projection.top_k_projection(scores, 2) * w).sum(), scores)
    assert torch.allclose(g, g_ref, atol=1e-5)


def test_gumbel_noise_samples_from_the_softmax():
    scores = torch.tensor([[0.0, 1.0, 2.0]]).expand(20000, 3)
    mask = torch.ones(20000, 3, dtype=torch.bool)
    noise = policy.gumbel_noise(scores.shape, torch.Generator().manual_seed(0))
    removed = projection.hard_top_k(scores + noise, mask, 1).mean(0)
    assert torch.allclose(removed, torch.softmax(scores[0], 0), atol=0.015)


# ----------------------------------------------------------------------------------------- inner
@pytest.mark.parametrize("explicit", [True, False])
def test_one_step_form_equals_the_generic_inner_loop(explicit):
    model = _toy_model(explicit)
    batch = _toy_batch(explicit)
    w = torch.rand(batch.items.shape, requires_grad=True)
    a = inner.adapt_user(model, inner.global_user(model), batch.items, batch.targets, w, explicit, 0.3, 1, True)
    b = inner.adapt_one_step(inner.inner_gradients(model, explicit), batch.items, batch.targets, w, explicit, 0.3)
    assert torch.allclose(a, b, atol=1e-5)
    params = [w, model.item_mlp.weight, model.user_gmf.weight, model.out.weight]
    ga = torch.autograd.grad(a.pow(2).sum(), params)
    gb = torch.autograd.grad(b.pow(2).sum(), params)
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, atol=1e-5)
    # evaluation mode returns a detached result
    c = inner.adapt_user(model, inner.global_user(model), batch.items, batch.targets, w.detach(), explicit, 0.3, 2, False)
    assert not c.requires_grad and c.shape == (len(batch), model.user_dim)


def test_item_losses_by_hand_and_errors():
    model = _toy_model(True)
    theta = torch.randn(2, model.user_dim)
    items, r = torch.tensor([[1, 2], [3, 4]]), torch.tensor([[5.0, 1.0], [2.0, 3.0]])
    pred = model.score_with_user(theta, items)
    assert torch.allclose(inner.item_losses(model, theta, items, r, True), (pred - r) ** 2)
    imp = _toy_model(False)
    full = imp.score_with_user(theta)
    ce = inner.item_losses(imp, theta, items, torch.ones(2, 2), False)
    assert torch.allclose(ce, torch.nn.functional.cross_entropy(full.repeat_interleave(2, 0), items.flatten(),
                                                                reduction="none").view(2, 2), atol=1e-5)
    nl = inner.next_item_loss(imp, theta, items[:, 0], torch.ones(2), False)
    assert torch.allclose(nl, ce[:, 0])
    assert inner.catalogue_scores(imp, theta).shape == (2, 15)
    with pytest.raises(ValueError, match="one global user"):
        inner.global_user(NCF(3, 4))
    with pytest.raises(ValueError, match="rows"):
        inner.item_losses(model, theta[:1], items, r, True)
    with pytest.raises(ValueError, match=">= 0"):
        inner.adapt_user(model, theta, items, r, r, True, -1.0, 1, False)


def test_score_jacobian_rows_are_per_item_gradients():
    model = _toy_model(False)
    theta = torch.randn(2, model.user_dim)
    items = torch.tensor([[0, 5, 9], [1, 1, 2]])
    s, jac = inner.score_jacobian(model, theta, items)
    assert s.shape == (2, 3) and jac.shape == (2, 3, model.user_dim)
    for b in range(2):
        for j in range(3):
            v = theta[b : b + 1].clone().requires_grad_(True)
            (g,) = torch.autograd.grad(model.score_with_user(v, items[b : b + 1, j]).sum(), v)
            assert torch.allclose(jac[b, j], g[0], atol=1e-6)
    s_all, jac_all = inner.score_jacobian(model, theta, None)
    assert jac_all.shape == (2, 15, model.user_dim)
    assert torch.allclose(jac_all[0, 5], jac[0, 1], atol=1e-6)


# ------------------------------------------------------------------------------------- baselines
def test_reservoir_keeps_each_item_with_probability_k_over_t():
    """Algorithm R: after t items, each one is in the reservoir of K with probability K / t."""
    n, K, T = 20000, 4, 25
    gen = torch.Generator().manual_seed(123)
    slots = torch.full((n, K), -1, dtype=torch.long)
    n_seen = torch.zeros(n, dtype=torch.long)
    for t in range(T):  # one item per step (online)
        slots = baselines.reservoir_update(slots, torch.full((n, 1), t), n_seen, gen)
        n_seen += 1
    freq = torch.stack([(slots == p).any(1).float().mean() for p in range(T)])
    se = np.sqrt(K / T * (1 - K / T) / n)
    assert torch.all((freq - K / T).abs() < 5 * se), freq  # 5 standard errors, fixed seed
    assert torch.all((slots >= 0).sum(1) == K)
    # batch feeding (tau = 5 at a time) gives the same law
    slots = torch.full((n, K), -1, dtype=torch.long)
    for s in range(0, T, 5):
        slots = baselines.reservoir_update(slots, torch.arange(s, s + 5).expand(n, 5), torch.full((n,), s), gen)
    freq = torch.stack([(slots == p).any(1).float().mean() for p in range(T)])
    assert torch.all((freq - K / T).abs() < 5 * se), freq
    with pytest.raises(ValueError):
        baselines.reservoir_update(slots, torch.zeros(3, 1, dtype=torch.long), n_seen, gen)


def test_reservoir_keep_is_an_indicator_over_the_intermediate_sketch():
    cand = torch.tensor([[0, 1, 2], [0, -1, 1]])
    mask = cand >= 0
    keep = baselines.reservoir_keep(cand, mask, 2, 1, torch.tensor([2, 1]), torch.Generator().manual_seed(0))
    assert keep.shape == (2, 3) and keep[0].sum() == 2
    assert torch.equal(keep[1], torch.tensor([1.0, 0.0, 1.0]))  # not full yet: keep everything


def test_hardest_scores_rank_by_loss():
    model = _toy_model(True)
    theta = inner.global_user(model).detach().expand(1, -1)
    items = torch.tensor([[1, 2, 3]])
    pred = model.score_with_user(theta, items).detach()
    targets = pred + torch.tensor([[0.1, 2.0, -1.0]])
    mask = torch.tensor([[True, True, True]])
    s = baselines.hardest_scores(model, theta, items, targets, mask, True)
    assert torch.allclose(s, torch.tensor([[0.01, 4.0, 1.0]]), atol=1e-5)
    s = baselines.hardest_scores(model, theta, items, targets, torch.tensor([[True, False, True]]), True)
    assert s[0, 1] == float("-inf")


@pytest.mark.parametrize("explicit", [True, False])
def test_influence_scores_match_the_formula(explicit):
    model = _toy_model(explicit)
    theta = torch.randn(2, model.user_dim) * 0.3
    items = torch.tensor([[1, 4, 6, 9], [2, 3, 5, 0]])
    targets = torch.tensor([[5.0, 1.0, 3.0, 4.0], [2.0, 2.0, 5.0, 1.0]]) if explicit else torch.ones(2, 4)
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    got = baselines.influence_scores(model, theta, items, targets, mask, explicit, damping=1e-2)
    for b in range(2):
        sel = items[b][mask[b]]
        grads, fisher = [], torch.zeros(model.user_dim, model.user_dim)
        for j, it in enumerate(sel):
            v = theta[b : b + 1].clone().requires_grad_(True)
            loss = inner.item_losses(model, v, it.view(1, 1), targets[b, j].view(1, 1), explicit).sum()
            grads.append(torch.autograd.grad(loss, v)[0][0])
        if explicit:
            for it in sel:
                v = theta[b : b + 1].clone().requires_grad_(True)
                (jg,) = torch.autograd.grad(model.score_with_user(v, it.view(1)).sum(), v)
                fisher += 2 * torch.outer(jg[0], jg[0])
        else:
            v = theta[b : b + 1].clone().requires_grad_(True)
            jac = torch.autograd.functional.jacobian(lambda u: model.score_with_user(u)[0], v)[:, 0]  # [M, D]
            p = torch.softmax(model.score_with_user(v)[0].detach(), 0)
            jbar = p @ jac
            fisher = len(sel) * (jac.T @ (p[:, None] * jac) - torch.outer(jbar, jbar))
        G = torch.stack(grads)
        direction = torch.linalg.solve(fisher + 1e-2 * torch.eye(model.user_dim), G.sum(0))
        assert torch.allclose(got[b][mask[b]], G @ direction, rtol=1e-3, atol=1e-5)
    assert got[1, 3] == float("-inf")
    with pytest.raises(ValueError, match="damping"):
        baselines.influence_scores(model, theta, items, targets, mask, explicit, damping=0.0)


# -------------------------------------------------------------------------------------- training
def test_sketch_config_and_sequence_batch():
    with pytest.raises(ValueError, match="method"):
        SketchConfig(k=2, tau=1, method="Oracle", explicit=True)
    with pytest.raises(ValueError, match=">= 1"):
        SketchConfig(k=0, tau=1, method="DiPS", explicit=True)
    assert SketchConfig(k=2, tau=1, method="DiPS@1", explicit=True, queue=50).queue_size == 1
    assert SketchConfig(k=2, tau=1, method="DiPS", explicit=True, queue=50).queue_size == 50
    seqs = rdata.Sequences(np.array([7, 9]), np.array([0, 3, 5]), np.array([4, 5, 6, 1, 2]),
                           np.array([5.0, 3.0, 1.0, 2.0, 4.0]), np.arange(5))
    b = SequenceBatch.from_sequences(seqs, 4, explicit=True)
    assert b.items.tolist() == [[4, 5, 6, 0], [1, 2, 0, 0]] and b.lengths.tolist() == [3, 2]
    assert torch.allclose(b.values[0, :3], torch.tensor([1.0, 0.6, 0.2]))
    bi = SequenceBatch.from_sequences(seqs, 4, explicit=False)
    assert bi.targets[0].tolist() == [1, 1, 1, 1] and bi.values[1].tolist() == [1, 1, 0, 0]
    assert b.take([1]).users.tolist() == [9]
    with pytest.raises(ValueError, match="max_len"):
        SequenceBatch.from_sequences(seqs, 1, explicit=True)


def test_policy_surrogate_is_zero_valued_with_the_sum_of_soft_gradients():
    torch.manual_seed(0)
    batch = _toy_batch(True)
    f = policy.SketchPolicy(15, hidden=4, init_std=0.5)
    cands = torch.tensor([[0, 1, 2], [1, 2, 3]]).expand(len(batch), 2, 3).clone()
    masks = torch.ones_like(cands, dtype=torch.bool)
    z = training.policy_surrogate(f, batch, cands, masks, k=2, tau=1)
    assert z.shape == batch.items.shape and torch.all(z == 0)
    w = torch.randn(z.shape)
    g = torch.autograd.grad((z * w).sum(), f.b2)[0]
    ref = 0
    for j in range(2):
        items = batch.items.gather(1, cands[:, j])
        s = f(items, batch.values.gather(1, cands[:, j]), masks[:, j])
        soft = policy.soft_selection(s, masks[:, j], 2, 1)
        ref = ref + (soft * w.gather(1, cands[:, j])).sum()
    (g_ref,) = torch.autograd.grad(ref, f.b2)
    assert torch.allclose(g, g_ref, atol=1e-6)


@pytest.mark.parametrize("method", ["Random", "Hardest", "Influence", "DiPS@1", "DiPS"])
@pytest.mark.parametrize("tau", [1, 3])
def test_sketch_pass_keeps_k_items_and_scores_every_next_item(method, tau):
    explicit = method != "Influence"
    batch = _toy_batch(explicit)
    model = _toy_model(explicit)
    cfg = SketchConfig(k=3, tau=tau, method=method, explicit=explicit)
    f = policy.SketchPolicy(15, 4) if cfg.learned else None
    res = training.sketch_pass(model, f, batch, cfg, generator=torch.Generator().manual_seed(0), record=True)
    n_steps = int((batch.lengths - 1).sum())
    if explicit:
        assert res.predictions.shape == (n_steps,) and res.targets.shape == (n_steps,)
    else:
        assert res.ranks.shape == (n_steps,) and res.ranks.min() >= 1
    traj = res.trajectory
    T = batch.items.shape[1]
    for t in range(T - 1):
        expected = min(3, ((t + 1) // tau) * tau)  # items enter every tau steps
        full = (traj[0, t] >= 0).sum()
        assert int(full) == expected, (t, traj[0, t])
        kept = traj[:, t][traj[:, t] >= 0]
        assert torch.all(kept <= t)  # never a future item
    with pytest.raises(ValueError):
        training.sketch_pass(model, None, batch, replace(cfg, method="DiPS"))


def test_training_step_moves_theta_and_phi():
    batch = _toy_batch(True)
    model = _toy_model(True)
    cfg = SketchConfig(k=2, tau=1, method="DiPS", explicit=True)
    f = policy.SketchPolicy(15, 4, init_std=0.3)
    before_m, before_p = copy.deepcopy(model.state_dict()), copy.deepcopy(f.state_dict())
    opt = torch.optim.Adam(list(model.parameters()) + list(f.parameters()), lr=1e-2)
    res = training.sketch_pass(model, f, batch, cfg, train=True, optimizer=opt, generator=torch.Generator().manual_seed(0),
                               keep_grads=True)
    assert np.isfinite(res.mean_loss)
    assert not torch.equal(before_m["item_mlp.weight"], model.item_mlp.weight)
    assert not torch.equal(before_p["w2.weight"], f.w2.weight)
    assert any(float(g.norm()) > 0 for g in res.policy_grads)
    with pytest.raises(ValueError, match="optimizer"):
        training.sketch_pass(model, f, batch, cfg, train=True)


@pytest.mark.parametrize("tau", [1, 3])
def test_queue_gradient_equals_true_gradient_when_the_policy_does_not_change(tau):
    """With learning rate 0 the queue's sketches are the ones the current Phi makes: eq. 10 is exact."""
    batch = _toy_batch(True, B=5, T=14)
    model = _toy_model(True)
    f = policy.SketchPolicy(15, 4, init_std=0.5)
    cfg = SketchConfig(k=2, tau=tau, method="DiPS", explicit=True)
    df = training.gradient_agreement(model, f, batch, cfg, lrs=(0.0,), seed=3)
    assert len(df) >= 3
    assert np.allclose(df["cosine"], 1.0, atol=1e-5) and np.allclose(df["rel_error"], 0.0, atol=1e-4)
    # with a large learning rate the policy drifts and the estimate departs from the truth
    df = training.gradient_agreement(model, f, batch, cfg, lrs=(0.5,), seed=3)
    assert df["rel_error"].max() > 1e-3
    with pytest.raises(ValueError, match="DiPS"):
        training.gradient_agreement(model, f, batch, replace(cfg, method="Random"), lrs=(0.0,))


def test_train_and_evaluate_sketching():
    seeds = seed_everything(0)
    batch = _toy_batch(False, B=8)
    for method in ("Random", "DiPS"):
        cfg = SketchConfig(k=2, tau=1, method=method, explicit=False)
        res = training.train_sketching(cfg, batch, batch, 15, seeds, epochs=2, batch_size=4, dim=3, layers=(4,),
                                       policy_hidden=4, include_init=True)
        assert len(res.history) == 2 and len(res.val_history) == 3 and 0 <= res.best_epoch <= 2
        assert (res.policy is not None) == cfg.learned
        m = training.evaluate_sketching(res.model, res.policy, batch, cfg, generator=seeds.torch_gen, record=True)
        assert 0 <= m["mrr@20"] <= m["recall@20"] <= 1 and m["n"] == int((batch.lengths - 1).sum())
        assert m["trajectory"].shape == (8, batch.items.shape[1], 2)
    with pytest.raises(ValueError, match="epochs"):
        training.train_sketching(cfg, batch, None, 15, seeds, epochs=0)
    explicit = _toy_batch(True)
    cfg = SketchConfig(k=2, tau=4, method="Hardest", explicit=True)
    res = training.train_sketching(cfg, explicit, None, 15, seeds, epochs=1, batch_size=3, dim=3, layers=(4,))
    assert res.val_history == [] and res.best_epoch == 1
    m = training.evaluate_sketching(res.model, None, explicit, cfg)
    assert m["rmse"] > 0
    assert abs(float(training.make_base_model(5, True, mean_rating=3.5).offset.detach()) - 3.5) < 1e-6


# ---------------------------------------------------------------------------------- case studies
def test_sketch_and_history_inputs_are_time_ordered():
    batch = _toy_batch(False, B=2, T=6)
    batch.lengths[:] = 6
    traj = torch.full((2, 6, 2), -1, dtype=torch.long)
    traj[:, 3] = torch.tensor([3, 1])
    seq, lengths, target = case_studies.sketch_inputs(batch, traj, pad=99)
    assert len(seq) == 2 * 5
    row = 3  # user 0, step 3
    assert lengths[row] == 2 and seq[row].tolist() == [batch.items[0, 1].item(), batch.items[0, 3].item()]
    assert target[row] == batch.items[0, 4]
    seq, lengths, target = case_studies.history_inputs(batch, pad=99)
    assert lengths[row] == 4 and seq[row].tolist()[:4] == batch.items[0, :4].tolist() and seq[row, 4] == 99


def test_gru_ranks_and_session_model():
    torch.manual_seed(0)
    gru = case_studies.GRU4Rec(15, 4, 6)
    ranks = case_studies.gru_ranks(gru, torch.tensor([[1, 2], [3, 15]]), torch.tensor([2, 0]), torch.tensor([4, 5]))
    assert ranks.shape == (2,) and ranks.min() >= 1 and ranks.max() <= 15
    batch = _toy_batch(False, B=3, T=9)
    traj = torch.stack([torch.stack([torch.tensor([max(t - 1, -1), t]) for t in range(9)])] * 3)
    rows = case_studies.session_rows(batch, traj, session_len=4, pad=15)
    n = int((batch.lengths - 1).sum())
    assert len(rows["target"]) == n
    # user 0 (length 9), target x_5: session starts at 4, holds x_4; sketch after step 3 = positions {2, 3}
    i = 4  # rows of user 0 are t = 1..8
    assert rows["sess_len"][i] == 1 and rows["sess"][i, 0] == batch.items[0, 4]
    assert rows["sk_len"][i] == 2 and rows["sk"][i].tolist() == batch.items[0, [2, 3]].tolist()
    assert rows["sk_len"][0] == 0  # the first session has no past sketch
    none = case_studies.session_rows(batch, None, 4, 15)
    assert none["sk"].shape == (n, 0)
    model = case_studies.SessionSketchGRU(15, 4, 6)
    hist = case_studies.fit_session_sketch(model, rows, seed_everything(0), epochs=3, batch_size=8, lr=1e-2)
    assert hist[-1] < hist[0]
    r = case_studies.session_ranks(model, rows)
    assert r.shape == (n,)
    r0 = case_studies.session_ranks(case_studies.SessionSketchGRU(15, 4, 6), none)
    assert r0.shape == (n,)
    assert case_studies.recall_mrr(torch.tensor([1, 4, 30]))["recall@20"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        case_studies.session_rows(batch, traj, 0, 15)


def test_policy_visualisation(tiny):
    T, K = 8, 2
    items = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2]])
    batch = SequenceBatch(items, torch.ones(1, T), torch.ones(1, T), torch.tensor([T]), np.array([0]))
    traj = torch.tensor([[[0, -1], [0, 1], [0, 2], [2, 3], [2, 4], [2, 5], [2, 6], [2, 7]]])
    ranks = torch.tensor([[0, 3, 40, 1, 25, 2, 9, 0]])
    frame, hits, user = case_studies.policy_visualisation(batch, traj, ranks, tiny, k=K, steps=4)
    assert user == 0 and frame.shape == (5, 4)
    assert frame.iloc[0].tolist() == [1, 1, 0, 0] and hits.tolist() == [True, False, True, False]
    assert list(frame.columns) == tiny.item_titles([2, 3, 4, 0])
    with pytest.raises(ValueError, match="FIG3_STEPS"):
        case_studies.policy_visualisation(batch, traj, ranks, tiny, k=K, steps=20)


# -------------------------------------------------------------------------------------- protocol
def test_settings_presets_and_validation():
    s = protocol.CHAPTER.make("tutorial", seed=1)
    assert s.ks == (2, 4) and s.taus == (1,) and s.repeats >= 3  # K = 8 trimmed for the time budget
    assert protocol.CHAPTER.make("paper").taus == (1, 4)
    assert protocol.CHAPTER.datasets(s) == ["ml-100k"]
    assert protocol.CHAPTER.datasets(protocol.CHAPTER.make("paper")) == ["ml-1m", "amazon-book"]
    for bad in (dict(ks=()), dict(taus=(4,)), dict(max_len=5), dict(alpha=0.0), dict(train_users=1), dict(eval_users=-2),
                dict(fig1_lrs=(-1.0,)), dict(repeats=0), dict(policy_epochs=-1), dict(inner_loss="max"),
                dict(syn_streams=("nope",)), dict(syn_len=3)):
        with pytest.raises(SettingsError):
            protocol.CHAPTER.make("smoke", **bad)


def test_check_datasets(data_tmp):
    with pytest.raises(KeyError, match="unknown dataset"):
        protocol.check_datasets(protocol.CHAPTER.make("smoke", dataset="no-such-data"))
    with pytest.raises(rdata.DatasetNotFoundError):
        protocol.check_datasets(protocol.CHAPTER.make("smoke"))  # the data folder is empty


def test_truncate_sequences():
    seqs = rdata.Sequences(np.array([0, 1]), np.array([0, 3, 5]), np.arange(5), np.ones(5), np.arange(5))
    out = protocol.truncate_sequences(seqs, 2)
    assert out.lengths.tolist() == [2, 2] and out.items.tolist() == [0, 1, 3, 4]
    assert protocol.truncate_sequences(seqs, None) is seqs
    with pytest.raises(ValueError):
        protocol.truncate_sequences(seqs, 0)


@pytest.fixture
def stream_data(monkeypatch):
    stream = rdata.drifting_stream(n_users=80, n_items=120, min_interactions=15, max_interactions=60, seed=0)
    frame = stream.df.copy()
    frame["rating"] = (frame["item"] % 5 + 1).astype("float32")
    rated = rdata.Interactions(frame, stream.n_users, stream.n_items, stream.user_ids, stream.item_ids, "stream")
    monkeypatch.setattr(protocol.rdata, "load", lambda name: rated)
    protocol._DATA_CACHE.clear()
    yield rated
    protocol._DATA_CACHE.clear()


def test_prepare_data_and_run_grid(stream_data):
    s = protocol.CHAPTER.make("smoke", core=5, implicit_threshold=3.0)
    d = protocol.prepare_data(s, "explicit", 0)
    users = {k: set(v.users) for k, v in d.sequences.items()}
    assert not (users["train"] & users["test"]) and not (users["train"] & users["val"])
    assert d.batches["train"].items.shape[1] <= s.max_len and len(d.batches["train"]) <= s.train_users
    di = protocol.prepare_data(s, "implicit", 0)
    assert torch.all(di.batches["train"].targets == 1)
    with pytest.raises(ValueError):
        protocol.prepare_data(s, "both", 0)
    s = replace(s, ks=(2,), taus=(1,))
    grid = protocol.run_grid(s, kinds=("explicit",))
    assert set(grid.runs["method"]) == set(training.METHODS + training.REFERENCES) and grid.runs["rmse"].gt(0).all()
    learned = grid.runs[grid.runs.method.isin(training.LEARNED)]
    assert learned.selected_epoch.min() >= 1 and learned["rmse_phi0"].notna().all()
    assert set(grid.curves.epoch) == {0, 1, 2}  # the start (recorded, not selectable), joint, policy-only
    key = ("explicit", 0, 2, 1, "DiPS")
    model, f = protocol.rebuild(s, "explicit", d.n_items, grid.artefacts[key])
    assert f.n_items == d.n_items and model.n_items == d.n_items
    assert protocol.sketch_config(s, "implicit", 4, 1, "Random").explicit is False
    with pytest.raises(ValueError, match="kinds"):
        protocol.run_grid(s, kinds=("other",))


def test_case_study_pipelines_on_a_small_grid(stream_data):
    s = replace(protocol.CHAPTER.make("smoke", core=5), ks=(2,), taus=(1,))
    grid = protocol.run_grid(s, kinds=("implicit",))
    d = protocol.prepare_data(s, "implicit", 0)
    model, f = protocol.rebuild(s, "implicit", d.n_items, grid.artefacts[("implicit", 0, 2, 1, "DiPS")])
    cfg = protocol.sketch_config(s, "implicit", 2, 1, "DiPS")
    traj = case_studies.trajectory(model, f, d.batches["test"], cfg)
    assert traj.shape == (*d.batches["test"].items.shape, 2)
    assert torch.equal(traj, case_studies.trajectory(model, f, d.batches["test"], cfg))  # deterministic policy
    seeds = seed_everything(0)
    table, hist = case_studies.policy_transfer(s, d, grid.artefacts, seeds)
    assert set(table["policy"]) == {"Random", "DiPS"} and set(table["K"]) == {2.0, np.inf} and len(hist) == s.gru_epochs
    full = table[~np.isfinite(table.K)]["recall@20"]
    assert full.nunique() == 1  # K = infinity: the same whole history for both policies
    aug = case_studies.session_augmentation(s, d, grid.artefacts, seeds)
    assert sorted(aug["K"].unique()) == [0, 2] and aug["recall@20"].between(0, 1).all()
    with pytest.raises(KeyError, match="no DiPS policy"):
        case_studies.policy_transfer(replace(s, ks=(4,)), d, grid.artefacts, seeds)


def test_the_grid_cache_is_keyed_on_settings_and_pinned_kernels(monkeypatch):
    """A grid computed with other kernels (another CPU capability, more threads) is another result."""
    s = protocol.CHAPTER.make("smoke")
    key = protocol._cache_key(s, "grid")
    assert protocol._cache_key(s, "grid") == key and protocol._cache_key(s, "synthetic") != key
    assert protocol._cache_key(protocol.CHAPTER.make("smoke", seed=1), "grid") != key
    monkeypatch.setenv("REC_LIB_CPU_CAPABILITY", "default")
    assert protocol._cache_key(s, "grid") != key
    monkeypatch.delenv("REC_LIB_CPU_CAPABILITY")
    monkeypatch.setenv("REC_LIB_THREADS", "4")
    assert protocol._cache_key(s, "grid") != key


def test_tasks_run_in_this_process_leave_the_callers_generators_alone():
    """workers=1 runs the grid's tasks here; they seed globally, which must not reach the caller."""
    seed_everything(3)
    expected = float(torch.rand(1))
    seed_everything(3)
    protocol._run([(11,), (12,)], seed_everything, workers=1, desc="tasks")
    assert float(torch.rand(1)) == expected


def test_on_every_split_runs_each_repetition_with_its_own_data(monkeypatch):
    from types import SimpleNamespace

    from rec_lib.sketching import case_studies, protocol

    prepared = []
    monkeypatch.setattr(protocol, "prepare_data", lambda s, kind, r: prepared.append((kind, r)) or f"data{r}")
    calls = []

    def study(settings, d, artefacts, seeds, device, repeat, per_user):
        calls.append((d, repeat, per_user))
        return pd.DataFrame({"recall@20": [0.1 * repeat]}), f"hist{repeat}"

    table, hists = case_studies.on_every_split(study, SimpleNamespace(repeats=3), {}, None, first="data0")
    assert calls == [("data0", 0, True), ("data1", 1, True), ("data2", 2, True)]
    assert prepared == [("implicit", 1), ("implicit", 2)]  # repetition 0's data was given
    assert list(table["split"]) == [0, 1, 2] and hists == ["hist0", "hist1", "hist2"]

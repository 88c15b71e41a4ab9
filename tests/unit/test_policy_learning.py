"""rec_lib.policy_learning: policy, rewards, index, estimators, protocol, benchmark, chapter settings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from rec_lib.config import SettingsError
from rec_lib.data import Interactions
from rec_lib.policy_learning import (
    CHAPTER,
    SNIS,
    DRReward,
    ExactGradient,
    ExactIndex,
    FastReinforce,
    HNSWIndex,
    IPSReward,
    LinearRewardModel,
    Reinforce,
    RowMembership,
    SessionReward,
    SoftmaxPolicy,
    argmax_reward,
    beta_hash,
    covariance_loss,
    estimator_gradient,
    exact_topk,
    logged_bandit,
    mean_contexts,
    mixture_log_q,
    policy_value,
    sample_mixture,
    sample_softmax,
    session_completion,
    snis_weights,
    speed_benchmark,
    stratified_counts,
    svd_item_embeddings,
    synthetic_session_data,
    topk_recall,
    train_policy,
)
from rec_lib.policy_learning import bench, experiments as ex


# ------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from threads, and a busy machine makes thread barriers slow."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small():
    """A 60-item catalogue, 4 contexts, reward sets, a policy with a random transform."""
    g = torch.Generator().manual_seed(0)
    P, L, B = 60, 6, 4
    beta = torch.randn(P, L, generator=g)
    policy = SoftmaxPolicy(beta, init="default", generator=torch.Generator().manual_seed(1))
    x = torch.randn(B, L, generator=g)
    sets = [[1, 5, 7], [0, 59], [10, 11, 12, 13, 40], [33]]
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in sets])])
    reward = SessionReward(indptr, np.concatenate(sets), P)
    return policy, x, torch.arange(B), reward, sets


def _exact(policy, x, ctx, reward):
    return estimator_gradient(ExactGradient(), policy, x, ctx, reward)


# ------------------------------------------------------------------ policy
def test_policy_shapes_identity_and_scores(small):
    policy, x, _, _, _ = small
    assert policy.n_items == 60 and policy.dim == 6 and policy.theta.shape == (6, 6)
    ident = SoftmaxPolicy(policy.beta)
    assert torch.equal(ident.theta, torch.eye(6))
    assert torch.allclose(ident.user_embedding(x), x)
    h = policy.user_embedding(x)
    items = torch.tensor([[0, 3, 59], [1, 1, 2], [5, 6, 7], [9, 8, 7]])
    dense = policy.scores(h)
    assert dense.shape == (4, 60)
    assert torch.allclose(policy.scores(h, items), torch.gather(dense, 1, items), atol=1e-6)
    assert torch.allclose(policy.log_probs(x).exp().sum(1), torch.ones(4), atol=1e-5)
    assert torch.equal(policy.argmax(x), dense.argmax(1))


def test_policy_rejects_bad_input():
    with pytest.raises(ValueError, match="P >= 2"):
        SoftmaxPolicy(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="init"):
        SoftmaxPolicy(torch.zeros(5, 3), init="xavier")
    bad = SoftmaxPolicy(torch.zeros(5, 3), transform=torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        bad.user_embedding(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="linear"):
        _ = SoftmaxPolicy(torch.zeros(5, 3), transform=torch.nn.Sequential(torch.nn.Linear(3, 3))).theta


def test_exact_topk_matches_full_sort_across_chunks():
    g = torch.Generator().manual_seed(3)
    beta, q = torch.randn(1000, 8, generator=g), torch.randn(5, 8, generator=g)
    s, i = exact_topk(q, beta, 17, chunk=97)
    ref_s, ref_i = torch.topk(q @ beta.T, 17, dim=1)
    assert torch.equal(i, ref_i) and torch.allclose(s, ref_s)
    with pytest.raises(ValueError, match="k must be"):
        exact_topk(q, beta, 1001)


# ------------------------------------------------------------------ rewards
def test_session_reward_lookup_dense_and_errors(small):
    _, _, ctx, reward, sets = small
    actions = torch.tensor([[1, 2, 7], [59, 0, 1], [40, 41, 13], [33, 33, 0]])
    expected = torch.tensor([[1, 0, 1], [1, 1, 0], [1, 0, 1], [1, 1, 0]], dtype=torch.float)
    assert torch.equal(reward(ctx, actions), expected)
    # a batch with a repeated context, in another order
    assert torch.equal(reward(torch.tensor([3, 0, 3]), torch.tensor([[33], [5], [1]]))[:, 0], torch.tensor([1.0, 1.0, 0.0]))
    dense = reward.dense(ctx)
    for b, s in enumerate(sets):
        assert set(torch.nonzero(dense[b]).flatten().tolist()) == set(s)
    assert reward.sizes().tolist() == [3, 2, 5, 1]
    with pytest.raises(IndexError, match="context ids"):
        reward(torch.tensor([4]), torch.tensor([[0]]))
    with pytest.raises(ValueError, match="CSR"):
        SessionReward(np.array([0, 3, 2]), np.array([1, 2]), 10)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        SessionReward(np.array([0, 1]), np.array([10]), 10)


def test_session_reward_from_interactions():
    df = pd.DataFrame({"user": [0, 0, 1, 2, 2, 2], "item": [3, 1, 2, 0, 4, 3], "rating": 1.0, "timestamp": np.arange(6)})
    Y = Interactions(df, 3, 5, np.arange(3), np.arange(5)).normalised()
    r = SessionReward.from_interactions(Y, np.array([2, 0]))  # context 0 = user 2, context 1 = user 0
    assert r.n_contexts == 2
    assert r(torch.tensor([0, 1]), torch.tensor([[0, 1], [1, 2]])).tolist() == [[1.0, 0.0], [1.0, 0.0]]


def _bandit_enumerated(P=6, tau=0.0, seed=0):
    """One context; every possible logged action as its own row (for exact expectations)."""
    g = torch.Generator().manual_seed(seed)
    pi0 = torch.softmax(torch.randn(P, generator=g), 0)
    pi = torch.softmax(torch.randn(P, generator=g), 0)
    rho = torch.rand(P, generator=g)
    actions = torch.arange(P)
    return pi0, pi, rho, actions


def test_ips_dr_definitions_by_brute_force():
    P = 7
    g = torch.Generator().manual_seed(1)
    actions, prop, rew = torch.tensor([2, 5, 0]), torch.tensor([0.3, 0.01, 0.9]), torch.tensor([1.0, 1.0, 0.0])
    z, beta = torch.randn(3, 4, generator=g), torch.randn(P, 4, generator=g)
    model = LinearRewardModel(z, beta, bias=-0.5)
    for tau in (0.0, 0.05):
        ips = IPSReward(actions, prop, rew, P, tau).dense(torch.arange(3))
        dr = DRReward(actions, prop, rew, P, model, tau).dense(torch.arange(3))
        for i in range(3):  # the definitions of section 1, one entry at a time
            for a in range(P):
                w = 1.0 / max(tau, float(prop[i]))
                r_m = float(torch.sigmoid(z[i] @ beta[a] - 0.5))
                r_m_logged = float(torch.sigmoid(z[i] @ beta[actions[i]] - 0.5))
                exp_ips = float(rew[i]) * w if a == actions[i] else 0.0
                exp_dr = r_m + ((float(rew[i]) - r_m_logged) * w if a == actions[i] else 0.0)
                assert ips[i, a].item() == pytest.approx(exp_ips, rel=1e-5)
                assert dr[i, a].item() == pytest.approx(exp_dr, rel=1e-5, abs=1e-6)
    samp = torch.tensor([[2, 3], [5, 5], [1, 0]])
    assert torch.allclose(IPSReward(actions, prop, rew, P)(torch.arange(3), samp),
                          torch.gather(IPSReward(actions, prop, rew, P).dense(torch.arange(3)), 1, samp))


def test_ips_and_dr_are_unbiased_and_clipping_biases_ips():
    """E over the logging policy of eq. 4 with IPS / DR equals the true value (tau = 0)."""
    P = 6
    pi0, pi, rho, actions = _bandit_enumerated(P)
    truth = float((pi * rho).sum())
    # row k = "the logging policy chose action k"; with E[r | a] = rho[a] the estimate is linear in r
    probs = pi.expand(P, P)
    wrong_model = LinearRewardModel(torch.ones(P, 1), torch.linspace(-1, 1, P)[:, None])
    for tau in (0.0, 0.5):
        ips = IPSReward(actions, pi0, rho, P, tau)
        dr = DRReward(actions, pi0, rho, P, wrong_model, tau)
        per_row_ips = (probs * ips.dense(torch.arange(P))).sum(1)
        per_row_dr = (probs * dr.dense(torch.arange(P))).sum(1)
        e_ips, e_dr = float((pi0 * per_row_ips).sum()), float((pi0 * per_row_dr).sum())
        if tau == 0.0:
            assert e_ips == pytest.approx(truth, rel=1e-5)
            assert e_dr == pytest.approx(truth, rel=1e-5)
        else:
            assert e_ips < truth  # max(tau, p) >= p shrinks every weight
    with pytest.raises(ValueError, match="propensities"):
        IPSReward(actions, torch.zeros(P), rho, P)
    with pytest.raises(ValueError, match="tau"):
        IPSReward(actions, pi0, rho, P, tau=2.0)
    with pytest.raises(ValueError, match="one length"):
        IPSReward(actions[:3], pi0, rho, P)


def test_logged_bandit_and_policy_value():
    beta = torch.randn(50, 5, generator=torch.Generator().manual_seed(0))
    a = logged_bandit(beta, 200, generator=torch.Generator().manual_seed(1))
    b = logged_bandit(beta, 200, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.actions, b.actions) and len(a) == 200
    probs = torch.softmax(a.logging_logits, 1)
    assert torch.allclose(a.propensities, probs[torch.arange(200), a.actions])
    assert set(a.rewards.unique().tolist()) <= {0.0, 1.0}
    pi = torch.softmax(torch.randn(200, 50), 1)
    assert policy_value(pi, a.ctr) == pytest.approx(float((pi * a.ctr.dense(torch.arange(200))).sum(1).mean()), rel=1e-6)
    with pytest.raises(ValueError, match=r"\[N, P\]"):
        policy_value(torch.ones(5), a.ctr)
    with pytest.raises(ValueError, match="n_contexts"):
        logged_bandit(beta, 0)
    with pytest.raises(ValueError, match="dimension"):
        LinearRewardModel(torch.ones(2, 3), torch.ones(4, 2))


# ------------------------------------------------------------------ index
def test_exact_and_hnsw_index(data_tmp):
    g = torch.Generator().manual_seed(0)
    beta = torch.randn(2000, 8, generator=g) * torch.rand(2000, 1, generator=g)  # unequal norms
    q = torch.randn(20, 8, generator=g)
    s_ex, i_ex = ExactIndex(beta).search(q, 10)
    idx = HNSWIndex(beta, M=16, ef_construction=64, ef_search=200)
    assert not idx.from_cache and idx.path.exists() and idx.build_seconds > 0 and idx.memory_bytes > 0
    s, i = idx.search(q, 10)
    assert s.shape == i.shape == (20, 10)
    assert topk_recall(i, i_ex) >= 0.95
    # returned scores are the inner products with the original vectors (augmentation preserves them)
    assert torch.allclose(s, torch.einsum("bl,bkl->bk", q, beta[i]), atol=1e-4)
    again = HNSWIndex(beta, M=16, ef_construction=64, ef_search=200)
    assert again.from_cache and again.build_seconds == pytest.approx(idx.build_seconds)
    assert torch.equal(again.search(q, 10)[1], i)
    assert HNSWIndex(beta, M=8, ef_construction=64, cache=False).key != idx.key
    with pytest.raises(ValueError, match="k must be"):
        idx.search(q, 5000)
    with pytest.raises(ValueError, match=r"\[B, 8\]"):
        idx.search(torch.zeros(2, 3), 5)
    with pytest.raises(ValueError, match="M must"):
        HNSWIndex(beta, M=0)
    with pytest.raises(ValueError, match="ef_search"):
        idx.set_ef_search(0)


def test_topk_recall_and_beta_hash():
    exact = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = torch.tensor([[4, 3, 9, -1], [8, 7, 6, 5]])
    assert topk_recall(approx, exact) == pytest.approx((2 / 4 + 1.0) / 2)
    with pytest.raises(ValueError, match=r"\[B, k\]"):
        topk_recall(approx[:, :2], exact)
    b = np.ones((3, 2), np.float32)
    assert beta_hash(b, M=1) == beta_hash(b.copy(), M=1) != beta_hash(b, M=2) != beta_hash(b * 2, M=1)


# ------------------------------------------------------------------ estimators: building blocks
def test_covariance_gradient_equals_exact_with_full_catalogue(small):
    """Whole catalogue as samples, exact weights pi: the covariance gradient (eq. 9) is the exact one."""
    policy, x, ctx, reward, _ = small
    g_exact = _exact(policy, x, ctx, reward)
    h = policy.user_embedding(x)
    a = torch.arange(policy.n_items).expand(len(ctx), -1)
    f = policy.scores(h, a)
    w = snis_weights(f, torch.full_like(f, -np.log(policy.n_items)))
    assert torch.allclose(w, torch.softmax(f.detach(), 1))
    policy.zero_grad()
    covariance_loss(f, w, reward(ctx, a)).backward()
    assert torch.allclose(-policy.h.weight.grad.reshape(-1), g_exact, atol=1e-6)
    # a covariance ignores a constant shift of the reward
    policy.zero_grad()
    f = policy.scores(policy.user_embedding(x), a)
    covariance_loss(f, w, reward(ctx, a) + 3.0).backward()
    assert torch.allclose(-policy.h.weight.grad.reshape(-1), g_exact, atol=1e-5)


def test_snis_weights_sum_to_one_and_shapes():
    f, lq = torch.randn(5, 40), torch.randn(5, 40)
    w = snis_weights(f, lq)
    assert torch.allclose(w.sum(1), torch.ones(5)) and (w >= 0).all() and not w.requires_grad
    with pytest.raises(ValueError, match="one shape"):
        snis_weights(f, lq[:, :3])
    with pytest.raises(ValueError, match="share one shape"):
        covariance_loss(f, w, torch.ones(5, 3))


def test_stratified_counts_are_exact():
    assert stratified_counts(1000, 0.8) == (800, 200)
    assert stratified_counts(7, 0.5) == (4, 3)  # round half to even: round(3.5) = 4
    assert stratified_counts(50, 0.0) == (0, 50) and stratified_counts(50, 1.0) == (50, 0)
    for S in range(2, 40):
        for eps in (0.1, 0.33, 0.9):
            n_u, n_k = stratified_counts(S, eps)
            assert n_u + n_k == S and n_u == round(S * eps)
    with pytest.raises(ValueError, match="S must"):
        stratified_counts(1, 0.5)
    with pytest.raises(ValueError, match="epsilon"):
        stratified_counts(10, 1.5)


def test_mixture_q_sums_to_one_and_is_eps_over_p_off_topk():
    P, K, B, eps = 30, 5, 3, 0.3
    g = torch.Generator().manual_seed(0)
    ids = torch.stack([torch.randperm(P, generator=g)[:K] for _ in range(B)])
    ids[2, -1] = -1  # an empty slot
    kappa = torch.softmax(torch.randn(B, K, generator=g).masked_fill(ids < 0, float("-inf")), 1)
    everything = torch.arange(P).expand(B, -1)
    q = mixture_log_q(everything, ids, kappa, eps, P).exp()
    assert torch.allclose(q.sum(1), torch.ones(B), atol=1e-6)
    member = torch.zeros(B, P, dtype=torch.bool)
    member[torch.arange(B)[:, None].expand(-1, K)[ids >= 0], ids[ids >= 0]] = True
    assert torch.allclose(q[~member], torch.full_like(q[~member], eps / P))
    for b in range(B):
        for k in range(K):
            if ids[b, k] >= 0:
                assert q[b, ids[b, k]].item() == pytest.approx(eps / P + (1 - eps) * kappa[b, k].item(), rel=1e-5)


def test_sample_mixture_stratified_and_distribution():
    P, K, B, S, eps = 40, 4, 2, 20_000, 0.25
    ids = torch.tensor([[3, 7, 11, 19], [0, 1, 2, 39]])
    f_top = torch.tensor([[0.0, 1.0, 2.0, -1.0], [0.5, 0.5, 0.0, 3.0]])
    gen = torch.Generator().manual_seed(0)
    a, log_q = sample_mixture(ids, f_top, S, eps, P, gen)
    n_u, n_k = stratified_counts(S, eps)
    assert a.shape == (B, S) and (a[:, n_u:, None] == ids[:, None, :]).any(-1).all()  # kappa draws lie in the top-K
    kappa = torch.softmax(f_top, 1)
    assert torch.allclose(log_q, mixture_log_q(a, ids, kappa, eps, P))
    freq = torch.stack([(a[b, n_u:, None] == ids[b]).float().mean(0) for b in range(B)])
    assert torch.allclose(freq, kappa, atol=5 * np.sqrt(0.25 / n_k))
    with pytest.raises(ValueError, match="topk_ids and f_top"):
        sample_mixture(None, None, 10, 0.5, P, gen)


def test_sample_softmax_matches_softmax_with_uneven_chunks():
    g = torch.Generator().manual_seed(0)
    beta, h = torch.randn(103, 5, generator=g), torch.randn(3, 5, generator=g)
    S = 60_000
    a = sample_softmax(h, beta, S, torch.Generator().manual_seed(1), chunk=17)
    assert a.shape == (3, S) and a.min() >= 0 and a.max() < 103
    p = torch.softmax(h @ beta.T, 1)
    freq = torch.zeros(3, 103).scatter_add_(1, a, torch.ones(3, S)) / S
    assert ((freq - p).abs() <= 5 * torch.sqrt(p * (1 - p) / S) + 1e-4).all()
    again = sample_softmax(h, beta, S, torch.Generator().manual_seed(1), chunk=17)
    assert torch.equal(a, again)


# ------------------------------------------------------------------ estimators: gradients
def _mean_estimate(est, policy, x, ctx, reward, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([estimator_gradient(est, policy, x, ctx, reward, gen) for _ in range(n)]).mean(0)


def test_reinforce_variants_are_unbiased(small):
    policy, x, ctx, reward, _ = small
    g = _exact(policy, x, ctx, reward)
    for est in (Reinforce(20), FastReinforce(20, chunk=7)):
        m = _mean_estimate(est, policy, x, ctx, reward, 400)
        assert torch.nn.functional.cosine_similarity(m, g, dim=0) > 0.97, est.name
        assert (m - g).norm() / g.norm() < 0.25, est.name


def test_snis_estimators_converge_with_s(small):
    policy, x, ctx, reward, _ = small
    g = _exact(policy, x, ctx, reward)
    errors = {}
    for S in (10, 2000):
        m = _mean_estimate(SNIS(S, 0.5, 8, ExactIndex(policy.beta)), policy, x, ctx, reward, 30)
        errors[S] = float((m - g).norm() / g.norm())
    assert errors[2000] < errors[10] and errors[2000] < 0.1
    m = _mean_estimate(SNIS(2000, 1.0), policy, x, ctx, reward, 30)
    assert (m - g).norm() / g.norm() < 0.1
    assert SNIS(10, 1.0).name == "uniform" and SNIS(10, 0.8, 4, ExactIndex(policy.beta)).name == "mixture(eps=0.8)"
    with pytest.raises(ValueError, match="needs an index"):
        SNIS(10, 0.5)
    with pytest.raises(ValueError, match="refresh_every"):
        SNIS(10, 0.5, 4, ExactIndex(policy.beta), refresh_every=0)


def test_snis_topk_cache_refreshes_every_r_visits(small):
    policy, x, ctx, reward, _ = small

    class Counting(ExactIndex):
        calls = 0

        def search(self, q, k):
            Counting.calls += len(q)
            return super().search(q, k)

    idx = Counting(policy.beta)
    est = SNIS(16, 0.5, 5, idx, refresh_every=3)
    gen = torch.Generator().manual_seed(0)
    h = policy.user_embedding(x)
    first = est.topk(h, ctx)
    assert torch.equal(first, exact_topk(h.detach(), policy.beta, 5)[1]) and Counting.calls == 4
    for _ in range(2):
        est.loss(policy, x, ctx, reward, gen)
    assert Counting.calls == 4 and est.searched == 4  # visits 2 and 3 reuse the sets
    est.loss(policy, x, ctx, reward, gen)
    assert Counting.calls == 8 and est.searched == 8  # visit 4 searches again
    est.reset()
    est.topk(h, ctx[:2])
    assert Counting.calls == 10


def test_exact_gradient_and_estimator_gradient_shapes(small):
    policy, x, ctx, reward, _ = small
    g = _exact(policy, x, ctx, reward)
    assert g.shape == (36,) and all(p.grad is None for p in policy.parameters())
    # finite differences of the objective of eq. 4
    theta = policy.h.weight.detach().clone()
    eps, i, j = 1e-3, 2, 4

    def objective(w):
        with torch.no_grad():
            policy.h.weight.copy_(w)
            return float((policy.log_probs(x).exp() * reward.dense(ctx)).sum(1).mean())

    plus, minus = theta.clone(), theta.clone()
    plus[i, j] += eps
    minus[i, j] -= eps
    fd = (objective(plus) - objective(minus)) / (2 * eps)
    objective(theta)
    assert g.reshape(6, 6)[i, j].item() == pytest.approx(fd, rel=1e-2, abs=1e-5)


def test_row_membership_against_python_sets():
    g = torch.Generator().manual_seed(0)
    B, S, N = 6, 50, 300
    sets = [sorted(set(torch.randint(0, N, (k,), generator=g).tolist())) for k in (0, 1, 5, 20, 40, 3)]
    rows = torch.tensor([b for b, s in enumerate(sets) for _ in s], dtype=torch.long)
    vals = torch.tensor([v for s in sets for v in s], dtype=torch.long)
    q = torch.randint(0, N, (B, S), generator=g)
    q[3, :5] = torch.tensor(sets[3][:5])
    for bits in (4, 16):  # 4 bits forces many hash collisions
        pos = RowMembership(bits)(rows, vals, q)
        for b in range(B):
            for s in range(S):
                inside = q[b, s].item() in sets[b]
                assert (pos[b, s].item() >= 0) == inside
                if inside:
                    assert vals[pos[b, s]].item() == q[b, s].item() and rows[pos[b, s]].item() == b
    assert (RowMembership()(rows[:0], vals[:0], q) == -1).all()
    with pytest.raises(ValueError, match="bits"):
        RowMembership(2)
    with pytest.raises(ValueError, match=r"\[B, S\]"):
        RowMembership()(rows, vals, q[0])


# ------------------------------------------------------------------ protocol
def _toy_interactions(n_users=60, n_items=40, per_user=24, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(u, i) for u in range(n_users) for i in rng.choice(n_items, per_user, replace=False)]
    df = pd.DataFrame(rows, columns=["user", "item"]).assign(rating=1.0, timestamp=np.arange(len(rows)))
    return Interactions(df, n_users, n_items, np.arange(n_users), np.arange(n_items), name="toy").normalised()


def test_svd_embeddings_and_mean_contexts():
    data = _toy_interactions()
    beta = svd_item_embeddings(data, 5, seed=0)
    assert beta.shape == (40, 5) and beta.dtype == np.float32
    np.testing.assert_array_equal(beta, svd_item_embeddings(data, 5, seed=0))
    m = data.matrix().toarray()
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    gram = (vt[:5].T * s[:5]) @ vt[:5]  # V S V^T is sign-invariant
    np.testing.assert_allclose(beta @ beta.T, gram, atol=1e-3)
    with pytest.raises(ValueError, match="SVD dimension"):
        svd_item_embeddings(data, 40)
    ctx = mean_contexts(data, np.array([3, 0]), torch.from_numpy(beta))
    items3 = data.items[data.users == 3]
    assert torch.allclose(ctx[0], torch.from_numpy(beta[items3].mean(0)), atol=1e-6)


def test_session_completion_protocol():
    data = _toy_interactions(n_users=100)
    prob = session_completion(data, 4, seed=0, min_interactions=20)
    users = prob.users
    assert sum(len(v) for v in users.values()) == 100
    assert not set(users["train"]) & set(users["test"]) and not set(users["val"]) & set(users["test"])
    assert prob.contexts["train"].shape == (80, 4) and prob.n_items == 40 and prob.dim == 4
    assert np.all(prob.rewards["train"].sizes() == 12)  # 24 items split 50/50
    assert prob.summary()["train users"] == 80
    with pytest.raises(ValueError, match="no user"):
        session_completion(data, 4, min_interactions=50)
    with pytest.raises(ValueError, match="rows"):
        session_completion(data, 4, beta=np.zeros((3, 4)))


def test_argmax_reward_and_train_policy():
    sessions, beta = synthetic_session_data(500, 120, 8)
    prob = session_completion(sessions, 8, beta=beta)
    policy = SoftmaxPolicy(prob.beta)
    r = argmax_reward(policy, prob.contexts["val"], prob.rewards["val"], batch_size=5)
    hand = prob.rewards["val"](torch.arange(len(prob.contexts["val"])), policy.argmax(prob.contexts["val"])[:, None]).mean()
    assert r == pytest.approx(float(hand))
    est = SNIS(50, 0.5, 16, ExactIndex(prob.beta))
    a = train_policy(prob, est, epochs=2, lr=1e-2, seed=3)
    b = train_policy(prob, est, epochs=2, lr=1e-2, seed=3)
    assert list(a.history.columns) == ["epoch", "train_reward", "val_reward", "train_seconds", "steps"]
    assert a.history.epoch.tolist() == [0, 1, 2] and a.history.train_seconds.is_monotonic_increasing
    assert torch.equal(a.policy.theta, b.policy.theta)
    assert not torch.equal(a.policy.theta, torch.eye(8))
    with pytest.raises(ValueError, match="lr > 0"):
        train_policy(prob, est, epochs=1, lr=0.0)
    c = train_policy(prob, est, epochs=3, lr=1e-2, seed=3, eval_every=2)
    d = train_policy(prob, est, epochs=3, lr=1e-2, seed=3)
    assert c.history.epoch.tolist() == [0, 2, 3]  # every 2 epochs, and the last
    assert torch.equal(c.policy.theta, d.policy.theta)  # evaluating less changes no step
    assert c.history.set_index("epoch").val_reward.to_dict() == {
        e: v for e, v in d.history.set_index("epoch").val_reward.items() if e in (0, 2, 3)}
    with pytest.raises(ValueError, match="eval_every >= 1"):
        train_policy(prob, est, epochs=1, lr=1e-2, eval_every=0)


# ------------------------------------------------------------------ benchmark
def test_speed_benchmark_tiny(data_tmp):
    res = speed_benchmark(sizes=(300, 600), dims=(8,), S=20, K=16, repeats=1, warmup=0, n_users=64, refresh_every=2)
    assert set(res.times.method) == set(bench.METHODS)
    assert len(res.times) == 2 * len(bench.METHODS) and (res.times.median_s > 0).all()
    r = res.times[(res.times.P == 600) & (res.times.method == "reinforce")]
    assert r["speedup vs reinforce"].iloc[0] == pytest.approx(1.0)
    assert len(res.indexes) == 2 and (res.indexes["recall@16"] > 0.5).all()
    bars = res.bars()
    assert bars["P"] == 600 and "mixture vs reinforce" in bars and "mixture growth" in bars
    with pytest.raises(ValueError, match="unknown methods"):
        speed_benchmark(sizes=(300,), methods=("magic",))
    with pytest.raises(ValueError, match="exceed K"):
        speed_benchmark(sizes=(100,), K=256)


def test_bench_command_line(data_tmp, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = bench.main(["--sizes", "300", "--dims", "8", "--samples", "20", "--top-k", "16", "--repeats", "1",
                     "--warmup", "0", "--threads", "1", "--methods", "reinforce", "mixture", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "per-step time" in text and "recall@16" in text
    saved = json.loads(out.read_text())
    assert {r["method"] for r in saved["times"]} == {"reinforce", "mixture"}
    beta, x, reward = bench.bench_problem(300, 8, n_users=40)
    assert beta.shape == (300, 8) and x.shape == (40, 8) and reward.n_contexts == 40


# ------------------------------------------------------------------ chapter settings and experiments
def test_chapter_settings():
    for scale in ("smoke", "tutorial", "paper"):
        s = CHAPTER.make(scale)
        assert s.scale == scale
    assert CHAPTER.datasets(CHAPTER.make("tutorial")) == ["ml-100k"]
    assert CHAPTER.datasets(CHAPTER.make("paper")) == ["twitch", "goodreads"]
    paper = CHAPTER.make("paper")
    assert (paper.lr, paper.second_lr, paper.dim, paper.batch_size, paper.epochs) == (1e-4, 5e-5, 1000, 32, 50)
    for bad in (dict(epsilon=1.5), dict(n_samples=1), dict(top_k=0), dict(bench_sizes=(100,)), dict(lr=-1.0),
                dict(synthetic_items=100), dict(init="zeros"), dict(threads=-1)):
        with pytest.raises(SettingsError):
            CHAPTER.make("tutorial", **bad)
    with pytest.raises(SettingsError, match="SCALE"):
        CHAPTER.make("huge")
    for bad in (dict(regime_s_small=200), dict(regime_s_small=1), dict(regime_k_small=128), dict(regime_k_small=0)):
        with pytest.raises(SettingsError, match="REGIME_._SMALL"):
            CHAPTER.make("tutorial", **bad)


def test_experiment_helpers(data_tmp):
    hist = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 3, "epoch": [0, 1, 2] * 2, "seed": 0,
                         "train_seconds": [0, 1, 2, 0, 3, 6], "val_reward": [0.1, 0.2, 0.3, 0.1, 0.5, 0.6]})
    t = ex.equal_time(hist, "a")
    assert t.loc["a", "epochs"] == 2 and t.loc["b", "epochs"] == 0 and t.loc["b", "val_reward"] == pytest.approx(0.1)
    assert t.budget_s.iloc[0] == 2
    with pytest.raises(ValueError, match="budget method"):
        ex.equal_time(hist, "c")
    with pytest.raises(ValueError, match="unknown estimator"):
        ex.make_estimator("magic", 10, 0.5, 4)
    assert isinstance(ex.make_estimator("reinforce-opt", 10, 0.5, 4), FastReinforce)
    assert ex.configure_threads(1) == 1
    g = torch.Generator().manual_seed(0)
    beta, q = torch.randn(500, 6, generator=g), torch.randn(40, 6, generator=g)
    idx = HNSWIndex(beta, M=8, ef_construction=32)
    rec = ex.recall_vs_ef(idx, beta, q, 10, (10, 200))
    assert list(rec.index) == [10, 200] and rec["recall@10"].iloc[1] >= rec["recall@10"].iloc[0]
    assert idx.ef_search == 256  # restored
    ope = ex.off_policy_check(n_items=200, dim=4, n_contexts=300, repeats=2)
    assert set(ope.estimator) == {"IPS", "DR", "model only"} and (ope.truth > 0).all()


def test_gradient_check_and_runner(data_tmp):
    sessions, beta = synthetic_session_data(400, 100, 6)
    prob = session_completion(sessions, 6, beta=beta)
    policy = SoftmaxPolicy(prob.beta)
    idx = HNSWIndex(prob.beta, M=8, ef_construction=32)
    cfg = [dict(kind="reinforce", S=30), dict(kind="mixture-exact", S=30, epsilon=0.5, K=16),
           dict(kind="uniform", S=float("nan"), epsilon=1.0, K=float("nan"))]
    out = ex.gradient_check(prob, policy, cfg, idx, repeats=3, batch=8)
    assert len(out) == 3 and out.cos_mean.between(-1, 1).all() and (out.rel_err >= 0).all()
    settings = CHAPTER.make("smoke", epochs=1)
    runner = ex.Runner(prob, settings, 1e-2, 16, idx)
    hist, fin = runner.grid({"u#0": dict(kind="uniform"), "m#0": dict(kind="mixture"), "m#1": dict(kind="mixture", seed=1)})
    assert set(hist.method) == {"u", "m"} and len(fin) == 3
    assert len(runner.runs) == 3
    runner.grid({"again": dict(kind="uniform")})
    assert len(runner.runs) == 3  # cached, not retrained
    assert fin.searched_share.iloc[1] == pytest.approx(1.0)
    assert ((fin.support >= 1) & (fin.support <= prob.n_items)).all()  # the trained policy's effective support


def test_randomized_svd_matches_arpack():
    # interactions with a clear rank-3 structure (three groups of users and items), so the top-3 subspace is well defined
    rng = np.random.default_rng(0)
    group_u, group_i = np.arange(90) % 3, np.arange(60) % 3
    prob = np.where(group_u[:, None] == group_i[None, :], 0.6, 0.05)
    u, i = np.nonzero(rng.random((90, 60)) < prob)
    df = pd.DataFrame({"user": u, "item": i, "rating": 1.0, "timestamp": np.arange(len(u))})
    data = Interactions(df, 90, 60, np.arange(90), np.arange(60)).normalised()
    a = svd_item_embeddings(data, 3, method="arpack")
    b = svd_item_embeddings(data, 3, method="randomized")
    np.testing.assert_allclose(a @ a.T, b @ b.T, atol=1e-3)
    with pytest.raises(ValueError, match="method"):
        svd_item_embeddings(data, 6, method="lanczos")


# ------------------------------------------------------------------ scale, breaking map, regime
def test_ivf_index_answers_mips_on_augmented_vectors():
    from rec_lib.policy_learning.index import IVFIndex

    g = torch.Generator().manual_seed(0)
    beta, q = torch.randn(3000, 8, generator=g) * torch.rand(3000, 1, generator=g), torch.randn(20, 8, generator=g)
    idx = IVFIndex(beta, nprobe=64)  # all lists visited: exact
    assert idx.params["nlist"] == 64 and idx.build_seconds > 0
    exact = exact_topk(q, beta, 10)[1]
    assert topk_recall(idx.search(q, 10)[1], exact) == pytest.approx(1.0)
    few = IVFIndex(beta, nprobe=2)
    assert 0.0 < topk_recall(few.search(q, 10)[1], exact) <= 1.0
    with pytest.raises(ValueError, match="k must be"):
        idx.search(q, 0)
    with pytest.raises(ValueError, match="queries"):
        idx.search(torch.randn(3, 5), 4)


def test_rotation_rounds_speed_rounds_and_fits(data_tmp):
    from rec_lib.policy_learning import scale

    calls = []
    r = scale.rotation_rounds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1,
                              calls=2)
    assert calls[:2] == ["a", "b"] and len(calls) == 2 + 3 * 2 * 2
    assert list(r.method) == ["a", "b"] * 3 and list(r["round"]) == [0, 0, 1, 1, 2, 2] and (r.seconds >= 0).all()
    with pytest.raises(ValueError):
        scale.rotation_rounds({}, repeats=1)
    rounds, idx = scale.speed_rounds([(400, 8), (900, 8)], S=20, K=16, repeats=2, warmup=0, n_users=64,
                                     hnsw_max=500)
    assert set(rounds.method) == set(scale.SPEED_METHODS) and len(rounds) == 2 * 2 * 3
    assert list(idx["index"]) == ["hnsw", "ivf"] and idx["recall@16"].between(0, 1).all()
    sp = scale.speedups(rounds)
    assert {"reinforce ms", "mixture speed-up", "uniform speed-up"} <= set(sp.columns) and len(sp) == 2
    # a synthetic cost curve: Reinforce 1 ms + 1 us per item, mixture 10 ms + 1 ms * log P
    P = np.repeat([1e3, 1e4, 1e5, 1e6], 2)
    fake = pd.concat([pd.DataFrame({"P": P, "L": 8, "method": "reinforce", "seconds": 1e-3 + 1e-6 * P}),
                      pd.DataFrame({"P": P, "L": 8, "method": "mixture", "seconds": 1e-2 + 1e-3 * np.log(P)})])
    fit = scale.cost_fits(fake, 8, bar=5.0)
    assert fit["b_s_per_item"] == pytest.approx(1e-6) and fit["d_s_per_logP"] == pytest.approx(1e-3)
    assert fit["ratio"](fit["crossing_P"]) == pytest.approx(5.0, rel=0.01)


def test_gradient_map_uniform_breaks_where_the_policy_is_peaked():
    from rec_lib.policy_learning import regime

    m = regime.gradient_map(sizes=(2000,), temperatures=(1.0, 32.0), n_contexts=8, S=50, K=32, repeats=6)
    assert set(m.proposal) == {"uniform", "mixture"} and m.cos_mean.between(-1, 1).all()
    assert (m.ess_share > 0).all() and (m.ess_share <= 1 + 1e-6).all()
    med = m.groupby(["c", "proposal"]).cos_mean.median()
    assert med[(1.0, "uniform")] > 0.9  # a flat policy: the uniform proposal is fine
    assert med[(32.0, "mixture")] > med[(32.0, "uniform")]  # a peaked one: only the mixture follows it
    assert m[m.c == 32.0].rho.median() < m[m.c == 1.0].rho.median()


def test_regime_training_per_user_hits_and_bias_statistics(data_tmp):
    from rec_lib.policy_learning import regime

    prob = regime.regime_problem(600, 6, 120, n_clusters=20, cluster_spread=0.1, seed=0)
    assert 100 <= sum(len(prob.users[s]) for s in ("train", "val", "test")) <= 120
    idx = HNSWIndex(prob.beta, M=8, ef_construction=32)
    fin, hits, hist = regime.compare_training(prob, {"m": lambda: SNIS(20, 0.8, 16, idx), "u": lambda: SNIS(20, 1.0)},
                                              seeds=2, epochs=1, lr=1e-2, batch_size=16, index=idx)
    assert len(fin) == 4 and set(hits.method) == {"m", "u"}
    assert len(hits) == 4 * len(prob.users["test"]) and hits.hit_exact.isin([0.0, 1.0]).all()
    d = regime.per_user_difference(hits, "m", "u")
    assert len(d) == len(prob.users["test"]) and np.all(np.abs(d) <= 1)
    policy = SoftmaxPolicy(prob.beta, init="identity")
    b = regime.bias_statistics(prob, policy, {"r": Reinforce(20), "u": SNIS(20, 1.0)}, repeats=5, batch=8)
    assert len(b) == 10 and (b.err2 >= 0).all()
    # the U-statistic: mean(u) = (|sum d|^2 - sum |d|^2) / (R (R - 1)) / |g|^2 <= mean(err2)
    assert b.groupby("estimator").u.mean().le(b.groupby("estimator").err2.mean()).all()


def test_effective_support_is_one_for_a_peaked_policy_and_p_for_a_flat_one():
    from rec_lib.policy_learning import regime

    beta = torch.eye(5)
    x = torch.tensor([[0.0] * 5, [60.0, 0, 0, 0, 0]])
    s = regime.effective_support(SoftmaxPolicy(beta, init="identity"), x, batch_size=1)
    assert s == pytest.approx([5.0, 1.0], abs=1e-6)


def test_select_lr_reads_validation_and_compare_training_takes_one_rate_per_label(data_tmp):
    from rec_lib.policy_learning import regime

    prob = regime.regime_problem(600, 6, 120, n_clusters=20, cluster_spread=0.1, seed=0)
    cfg = {"m": lambda: SNIS(20, 0.5, 16, ExactIndex(prob.beta)), "u": lambda: SNIS(20, 1.0)}
    best, table = regime.select_lr(prob, cfg, [0.1, 1e-3], epochs=1, batch_size=16)
    assert len(table) == 4 and list(table.lr.unique()) == [1e-3, 0.1]  # sorted, one run per (label, lr)
    for m, g in table.groupby("method"):
        assert best[m] == g.lr.iloc[int(np.argmax(g.val_final.to_numpy()))]
    # a run's validation reward is what train_policy reports for that rate and the first seed
    one = train_policy(prob, SNIS(20, 1.0), 1, 0.1, 16, seed=0, init="default")
    got = table[(table.method == "u") & (table.lr == 0.1)].val_final.item()
    assert got == pytest.approx(float(one.history.val_reward.iloc[-1]))
    fin, _, _ = regime.compare_training(prob, cfg, seeds=1, epochs=1, lr={"m": 0.1, "u": 1e-3}, batch_size=16)
    assert fin.set_index("method").lr.to_dict() == {"m": 0.1, "u": 1e-3}
    assert ((fin.support >= 1) & (fin.support <= prob.n_items)).all()
    with pytest.raises(ValueError, match="no learning rate"):
        regime.compare_training(prob, cfg, seeds=1, epochs=1, lr={"m": 0.1}, batch_size=16)
    with pytest.raises(ValueError, match="learning rate"):
        regime.select_lr(prob, cfg, [], epochs=1, batch_size=16)


def test_step_time_rounds_and_equal_time_epochs(data_tmp):
    sessions, beta = synthetic_session_data(400, 100, 6)
    prob = session_completion(sessions, 6, beta=beta)
    r = ex.step_time_rounds(prob, {"u": SNIS(20, 1.0), "e": ExactGradient()}, batch_size=8, repeats=2, calls=2)
    assert set(r.method) == {"u", "e"} and len(r) == 4
    fake = pd.DataFrame({"round": [0, 0, 1, 1], "method": ["u", "m"] * 2, "seconds": [1.0, 2.5, 1.0, 2.5]})
    assert ex.equal_time_epochs(fake, "u", "m", 10) == (4, pytest.approx(2.5))
    assert ex.equal_time_epochs(fake, "m", "u", 10)[0] == 10  # never more than the budget's epochs

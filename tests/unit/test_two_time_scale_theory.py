"""Theorem 2.1's closed forms (rec_lib.two_time_scale.theory) against direct sums and brute force."""

import math

import numpy as np
import pytest
from scipy.special import zeta

from rec_lib.two_time_scale import theory as th


def test_hurwitz_zeta_is_the_sum_from_zero():
    # zeta(s, q) = sum_{n >= 0} (n + q)^-s; the paper's printed sum from i = 1 misses the first term
    s, q = 2.5, 3.0
    direct = sum((n + q) ** -s for n in range(200_000)) + (200_000 + q) ** (1 - s) / (s - 1)
    assert th.hurwitz_zeta(s, q) == pytest.approx(direct, rel=1e-8)
    assert th.hurwitz_zeta(2.0, 1.0) == pytest.approx(math.pi**2 / 6)
    with pytest.raises(ValueError, match="s > 1"):
        th.hurwitz_zeta(1.0, 1.0)
    with pytest.raises(ValueError, match="q > 0"):
        th.hurwitz_zeta(2.0, 0.0)


def test_power_law_pmf_and_share_active():
    T = np.arange(200_000)
    p = th.power_law_pmf(T, 2.0)
    assert p[0] == pytest.approx(6 / math.pi**2)
    assert p.sum() == pytest.approx(1.0, abs=1e-5)
    assert th.prob_active(0, 2.0) == pytest.approx(1.0)
    assert th.prob_active(5, 2.0) == pytest.approx(1 - p[:5].sum(), rel=1e-9)
    with pytest.raises(ValueError, match="alpha must be > 1"):
        th.power_law_pmf(T, 1.0)
    with pytest.raises(ValueError, match="non-negative integers"):
        th.prob_active(-1, 2.0)


@pytest.mark.parametrize("alpha", [1.5, 2.0, 3.0])
@pytest.mark.parametrize("t_star", [0, 1, 7, 40])
def test_beta_matches_a_direct_numerical_sum(alpha, t_star):
    Q, var_m = 9.0, 0.4
    assert th.beta(t_star, alpha, Q, var_m) == pytest.approx(th.beta_direct(t_star, alpha, Q, var_m), rel=1e-6)


def test_beta_is_vectorised_and_bounded_by_its_pieces():
    t = np.arange(0, 100)
    b = th.beta(t, 2.0, 4.0, 0.5)
    assert b.shape == (100,)
    assert b[0] == pytest.approx(zeta(3.0, 1.0) / zeta(2.0, 1.0) * 4.0)  # everyone active: E[Q/(T+1)]
    assert b[-1] < 0.5 + 4.0 / 100  # almost everyone inactive: about Var_m
    with pytest.raises(ValueError, match="Q and Var_m"):
        th.beta(0, 2.0, 0.0, 0.5)


@pytest.mark.parametrize("Q,var_m", [(9.0, 0.4), (4.0, 0.5), (100.0, 3.0), (1.0, 2.0), (30.0, 1.0)])
@pytest.mark.parametrize("alpha", [1.5, 2.5])
def test_optimal_threshold_is_the_brute_force_argmin(Q, var_m, alpha):
    brute = th.brute_force_threshold(alpha, Q, var_m)
    assert th.optimal_threshold(Q, var_m) == brute
    # eq. 7 as printed is off by one unless Q / Var_m is an integer
    r = Q / var_m
    if float(r).is_integer():
        assert th.paper_threshold(Q, var_m) == brute
    elif r > 1:
        assert th.paper_threshold(Q, var_m) == brute - 1


def test_beta_increment_sign_changes_at_q_over_var():
    Q, var_m, alpha = 9.0, 0.4, 2.0  # Q / Var_m = 22.5
    t = np.arange(60)
    inc = np.diff(th.beta(t, alpha, Q, var_m))
    assert (inc[:22] < 0).all() and (inc[22:] > 0).all()


def test_implication1_gap_equals_beta_difference():
    Q, var_m, alpha = 9.0, 0.4, 2.0
    t = th.optimal_threshold(Q, var_m)
    gap = th.implication1_gap(alpha, Q, var_m)
    assert gap == pytest.approx(th.beta(0, alpha, Q, var_m) - th.beta(t, alpha, Q, var_m), rel=1e-10)
    assert gap > 0
    # the paper's printed form lacks 1 / zeta(alpha, 1)
    printed = sum((Q / k - var_m) * k ** (-alpha) for k in range(1, t + 1))
    assert gap == pytest.approx(printed / zeta(alpha, 1.0))


def test_step_sizes_and_bounds():
    Q, var_m, alpha, B, N = 9.0, 0.4, 2.0, 1.5, 50
    t = np.arange(0, 80)
    g = th.optimal_step_size(t, N, alpha, Q, var_m, B)
    # eq. 5 is minimised at gamma(t*), where it equals eq. 6
    for k in (0, 10, 40):
        f = lambda x: th.excess_risk_bound(k, x, N, alpha, Q, var_m, B)  # noqa: E731
        assert float(f(g[k])) == pytest.approx(float(th.bound_at_optimal_step(k, N, alpha, Q, var_m, B)))
        assert f(g[k] * 1.1) > f(g[k]) and f(g[k] / 1.1) > f(g[k])
    g_act, g_in = th.group_step_sizes(t, N, alpha, Q, var_m, B)
    assert g_in == pytest.approx(np.sqrt(var_m / N) / B)
    # gamma_act < gamma_in holds from t** on, not for small thresholds
    t_opt = th.optimal_threshold(Q, var_m)
    assert (g_act[t_opt:] < g_in[t_opt:]).all()
    assert g_act[0] > g_in[0]
    # two step sizes never have a larger bound than one shared step size
    assert (th.two_step_bound(t, N, alpha, Q, var_m, B) <= th.bound_at_optimal_step(t, N, alpha, Q, var_m, B) + 1e-12).all()
    with pytest.raises(ValueError, match="gamma > 0"):
        th.excess_risk_bound(0, 0.0, N, alpha, Q, var_m, B)


def test_q_bar_is_the_worst_case_constant():
    assert th.q_bar(1.0, 0.1, 10.0) == pytest.approx((1.0 + 1.0) ** 2 / 0.01)
    assert th.q_bar(1.0, 0.1, 10.0, np.array([1.0, 4.0])) == pytest.approx(400.0)
    with pytest.raises(ValueError, match="exceed B_phi"):
        th.q_bar(1.0, 0.1, 1.0, np.array([4.0]))
    with pytest.raises(ValueError, match="must be > 0"):
        th.q_bar(0.0, 0.1, 1.0)

"""The learning-to-learn simulation (rec_lib.two_time_scale.simulation): hand-computed steps and checks."""

import numpy as np
import pytest

from rec_lib.two_time_scale import simulation as sim
from rec_lib.two_time_scale import theory as th


def _sig(z):
    return 1 / (1 + np.exp(-z))


def test_logistic_loss_and_gradient_against_finite_differences():
    rng = np.random.default_rng(0)
    phi, x = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    y, c = np.array([0.0, 1.0, 0.3, 1.0]), 0.2
    z = (phi * x).sum(1)
    assert np.allclose(sim.logistic_loss(phi, x, y, c), -y * z + np.log1p(np.exp(z)) + 0.1 * (phi**2).sum(1))
    g = sim.logistic_grad(phi, x, y, c)
    eps = 1e-6
    for k in range(3):
        e = np.zeros(3)
        e[k] = eps
        fd = (sim.logistic_loss(phi + e, x, y, c) - sim.logistic_loss(phi - e, x, y, c)) / (2 * eps)
        assert np.allclose(g[:, k], fd, atol=1e-6)


def test_project_ball():
    phi = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    out = sim.project_ball(phi, 1.0)
    assert np.allclose(out, [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]])


def test_power_law_sampler_matches_the_pmf():
    rng = np.random.default_rng(0)
    T = sim.sample_power_law(200_000, 2.0, 1000, rng)
    freq = np.bincount(T, minlength=4)[:4] / len(T)
    p = th.power_law_pmf(np.arange(4), 2.0)
    assert np.allclose(freq, p / th.power_law_pmf(np.arange(1001), 2.0).sum(), atol=0.005)
    assert T.min() >= 0 and T.max() <= 1000
    with pytest.raises(ValueError, match="t_max"):
        sim.sample_power_law(5, 2.0, 0, rng)


def _tiny_population(T=(0, 3), c=0.5, B_phi=2.0):
    items = np.array([[1.0, 0.0], [0.0, 1.0], [-0.6, 0.8]])
    w = np.array([[2.0, -1.0], [0.5, 1.5]])
    phi_star = sim._solve_phi_star(items, w, c, B_phi)
    m = phi_star.mean(0)
    return sim.L2LPopulation(items, w, phi_star, np.array(T), np.zeros_like(w), m,
                             float(((phi_star - m) ** 2).sum(1).mean()), 2.0, c, 1.0, B_phi, 0.0)


def test_phi_star_zeroes_the_expected_gradient():
    pop = _tiny_population()
    p = _sig(pop.w @ pop.items.T)
    s = _sig(pop.phi_star @ pop.items.T)
    grad = (s - p) @ pop.items / len(pop.items) + pop.c * pop.phi_star
    assert np.abs(grad).max() < 1e-9
    with pytest.raises(ValueError, match="B_phi"):
        sim._solve_phi_star(pop.items, 50 * pop.w, 0.01, 0.1)


def test_offline_sgd_first_step_by_hand():
    # one sample from phi = 0 with step 1/c: phi = Proj[(y - 1/2) x / c]
    items = np.array([[1.0, 0.0]])
    w = np.array([[50.0, 0.0], [-50.0, 0.0]])  # clicks almost surely / almost never
    out = sim.offline_sgd(w, items, np.array([1, 1]), c=2.0, B_phi=10.0, rng=np.random.default_rng(0))
    assert np.allclose(out, [[0.25, 0.0], [-0.25, 0.0]])
    assert np.allclose(sim.offline_sgd(w, items, np.array([0, 0]), 2.0, 10.0, np.random.default_rng(0)), 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        sim.offline_sgd(w, items, np.array([-1, 0]), 2.0, 10.0, np.random.default_rng(0))


def test_ogd_matches_a_hand_computed_step():
    pop = _tiny_population()
    idx = np.array([[0, 2], [1, 1]])
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    phi1 = np.array([[0.1, -0.2], [0.0, 0.3]])
    gamma = np.array([0.5, 0.25])
    got = sim.ogd_excess_risk(pop, phi1, gamma, (idx, y))
    # by hand, user by user
    for u in range(2):
        phi, total = phi1[u].copy(), 0.0
        for t in range(2):
            x = pop.items[idx[u, t]]
            p = _sig(x @ pop.w[u])

            def loss(v):
                return -p * (x @ v) + np.log1p(np.exp(x @ v)) + pop.c / 2 * v @ v

            total += loss(phi) - loss(pop.phi_star[u])
            g = (_sig(x @ phi) - y[u, t]) * x + pop.c * phi
            phi = phi - gamma[u] * g
            phi = phi * min(1.0, pop.B_phi / np.linalg.norm(phi))
        assert got[u] == pytest.approx(total / 2, rel=1e-12)
    with pytest.raises(ValueError, match="gamma > 0"):
        sim.ogd_excess_risk(pop, phi1, 0.0, (idx, y))


def test_initialisation_of_eq4():
    pop = _tiny_population(T=(0, 3))
    pop.phi_hat[:] = [[9.0, 9.0], [7.0, 7.0]]
    init = pop.init(2)
    assert np.allclose(init[0], pop.m) and np.allclose(init[1], [7.0, 7.0])
    assert np.allclose(pop.init(0), pop.phi_hat)


def test_population_and_threshold_sweep():
    pop = sim.simulate_population(n_users=800, dim=3, n_catalogue=100, t_max=300, seed=0)
    assert pop.phi_star.shape == (800, 3) and pop.T.shape == (800,)
    assert pop.Q == pytest.approx((pop.B_x + pop.c * pop.B_phi) ** 2 / pop.c**2)
    assert 0 < pop.var_m < pop.Q
    # SGD estimates improve with more data
    e = pop.offline_sq_error
    assert e[pop.T >= 20].mean() < e[(pop.T >= 3) & (pop.T < 20)].mean()
    stream = sim.online_stream(pop, 5, np.random.default_rng(1))
    assert stream[0].shape == (800, 5) and set(np.unique(stream[1])) <= {0.0, 1.0}
    df = sim.threshold_sweep(pop, [0, 1, 5, 5, 50], stream)
    assert list(df.index) == [0, 1, 5, 50]
    assert df.loc[0, "share_active"] == 1.0
    assert np.allclose(df["beta"], th.beta(df.index.to_numpy(), pop.alpha, pop.Q, pop.var_m))
    # the bound holds for the measured initial error (Proposition A.1 is a valid bound here)
    assert (df["init_sq_error"] <= df["beta"] * 1.05).all()
    assert (df["risk_shared"] <= df["bound_shared"]).all()
    with pytest.raises(ValueError, match="alpha must be > 1"):
        sim.simulate_population(n_users=10, alpha=0.5)


def test_calibrated_threshold_and_tuned_sweep():
    import numpy as np

    from rec_lib.two_time_scale import simulation as sim
    from rec_lib.two_time_scale import theory as th

    pop = sim.simulate_population(n_users=3000, t_max=300, seed=0)
    b = sim.binned_offline_error(pop, min_users=30)
    assert (b["scaled"] <= pop.Q).all()  # Proposition A.1 holds on the measured errors
    t_hat, q_hat = sim.calibrated_threshold(pop, min_users=30)
    assert 0 < q_hat < pop.Q and t_hat >= th.optimal_threshold(q_hat, pop.var_m)
    assert t_hat < th.optimal_threshold(pop.Q, pop.var_m)
    rng = np.random.default_rng(1)
    a, c = (sim.online_stream(pop, 5, rng) for _ in range(2))
    gammas = np.array([0.1, 0.4])
    sw = sim.tuned_sweep(pop, [0, 5, 10**6], gammas, a, c)
    assert set(sw["gamma_one"]) <= set(gammas)
    assert sw.loc[10**6, "share_active"] == 0.0
    # with nobody active, one and two steps are the same rule
    assert sw.loc[10**6, "risk_one"] == pytest.approx(sw.loc[10**6, "risk_two"])
    r_m, r_hat = sim.risk_table(pop, gammas, c)
    one = sim.ogd_excess_risk(pop, pop.init(5), 0.4, c)
    assert np.allclose(np.where(pop.T >= 5, r_hat[1], r_m[1]), one)

"""What the offline-policy chapter's smoke run measured (ledger read back)."""

import pytest

CHAPTER = "fast_offline_policy"


def test_ledger_claims_and_identity(smoke_run):
    led = smoke_run(CHAPTER).ledger
    ids = {c["id"] for c in led["claims"]}
    assert ids == {"speedup", "log-scaling", "covariance", "as-good-as-reinforce", "equal-time", "uniform-not-best",
                   "larger-S", "robust-K", "bias-falls-with-S", "index-params"}
    assert led["metrics"]["covariance_identity_rel_gap"] < 1e-4
    cov = next(c for c in led["claims"] if c["id"] == "covariance")
    assert cov["verdict"] == "holds"
    assert 0.0 <= led["metrics"]["hnsw_recall_main"] <= 1.0


def test_speed_table_covers_every_method_size_and_dim(smoke_run):
    led = smoke_run(CHAPTER).ledger
    s = led["settings"]
    times = led["tables"]["speed"]
    assert set(times.method) == {"reinforce", "reinforce-opt", "uniform", "mixture", "mixture-cached", "mixture-exact"}
    assert set(times.P) == set(s["bench_sizes"]) and set(times.L) == set(s["bench_dims"])
    assert (times.median_s > 0).all()
    ref = times[times.method == "reinforce"]["speedup vs reinforce"]
    assert ref.tolist() == pytest.approx([1.0] * len(ref))
    idx = led["tables"]["speed_index"]
    assert (idx[f"recall@{s['top_k']}"].between(0, 1)).all() and (idx.memory_mb > 0).all()


def test_training_tables(smoke_run):
    led = smoke_run(CHAPTER).ledger
    s = led["settings"]
    for key in ("main", "second"):
        fin = led["tables"][f"eps_final_{key}"]
        cached = f"ε={s['epsilon']:g}, top-K kept {s['topk_refresh']} epochs"
        expected = {"Reinforce", cached, *(f"ε={e:g}" for e in s["epsilons"])}
        assert expected == set(fin.method)
        assert fin.test_true.between(0, 1).all() and fin.test_index.between(0, 1).all()
    assert set(led["tables"]["s_final"].S) == set(s["s_values"])
    eq = led["tables"]["equal_time"].set_index("method")
    assert eq.loc["ε=1", "seconds"] <= eq.budget_s.iloc[0] + 1e-9
    idx = led["tables"]["index_effect"].set_index("method")
    cached = [m for m in idx.index if m.startswith("top-K refreshed")]
    assert len(cached) == 1 and idx.loc[cached[0], "searched_share"] < 1.0


def test_gradient_check_and_estimators(smoke_run):
    led = smoke_run(CHAPTER).ledger
    grad = led["tables"]["gradient_check"]
    assert set(grad.policy) == {"initial", "trained"}
    rf = grad[grad.kind == "reinforce"]
    assert (rf.cos_mean > 0.9).all()  # Reinforce is unbiased: its mean estimate points along the exact gradient
    ope = led["tables"]["ope_estimators"]
    unclipped = ope[(ope.tau == 0.0)]
    assert set(unclipped.estimator) == {"IPS", "DR"}

"""What the DiPS chapter's smoke run wrote to its ledger."""

import numpy as np

METHODS = ["Random", "Recent", "Hardest", "Influence", "DiPS@1", "DiPS"]


def test_dips_chapter_ledger(smoke_run):
    led = smoke_run("dips").ledger
    runs = led["tables"]["runs"]
    s = led["settings"]
    # every cell of Tables 2-4: kinds x repeats x taus x ks x six methods, plus K = 0 and full per kind and repeat
    assert len(runs) == 2 * s["repeats"] * (len(s["taus"]) * len(s["ks"]) * len(METHODS) + 2)
    assert set(runs["method"]) == set(METHODS) | {"K=0", "Full"}
    # no learned run reports its untrained policy
    learned = runs[runs.method.isin(["DiPS", "DiPS@1"])]
    assert (learned["selected_epoch"] >= 1).all()
    explicit, implicit = runs[runs.setting == "explicit"], runs[runs.setting == "implicit"]
    assert explicit["rmse"].between(0.5, 2.0).all()
    assert implicit["recall@20"].between(0, 1).all() and (implicit["mrr@20"] <= implicit["recall@20"]).all()
    for name in ("table2_rmse", "table3_recall", "table4_mrr"):
        table = led["tables"][name]
        assert list(table.columns) == ["tau", "K", *METHODS, "K=0", "full"]
        assert len(table) == len(s["taus"]) * len(s["ks"])
    # the learning curves start at epoch 0 (recorded, never selected)
    assert set(led["tables"]["curves"]["epoch"]) == {0, 1, 2}
    # Figure 1: at learning rate 0 the queue gradient is the true gradient, for every repetition kept
    fig1 = led["tables"]["fig1_gradient"]
    assert np.allclose(fig1.loc[fig1["lr"] == 0.0, "cosine"], 1, atol=1e-4)
    # reservoir sampling keeps each of 25 items with probability 4/25
    assert np.allclose(led["metrics"]["reservoir_keep_freq"], 4 / 25, atol=0.02)
    fig2a, fig2b = led["tables"]["fig2a_transfer"], led["tables"]["fig2b_sessions"]
    assert set(fig2a["policy"]) == set(fig2b["policy"]) == {"Random", "DiPS"}
    assert fig2b[fig2b.K == 0]["recall@20"].nunique() == 1  # K = 0: the same session-only model
    # the synthetic streams: every stream, with its references
    syn = led["tables"]["synthetic_runs"]
    assert set(syn["setting"]) == set(s["syn_streams"]) and {"K=0", "Full"} <= set(syn["method"])
    assert (syn[syn.method.isin(["DiPS", "DiPS@1"])]["selected_epoch"] >= 1).all()
    comp = led["tables"]["synthetic_composition"]
    assert comp[["noise share", "current-topic share"]].stack().between(0, 1).all()
    claims = led["claims"]
    ids = {c["id"] for c in claims}
    assert {"rmse-dips-below-random", "learned-best-explicit", "half-the-items-explicit", "dips-beats-dips1",
            "queue-gradient-train-lr", "transfer-gru4rec", "sessions-augmented", "policy-learns-explicit",
            "signal-dips-beats-random", "clean-dips-beats-random", "drift-dips-beats-recent",
            "selected-epoch-trained"} <= ids
    roles = {c["role"] for c in claims}
    assert {"headline", "mechanism", "control", "check"} <= roles
    for c in claims:
        ok = ("passes", "fails") if c["kind"] == "check" else ("holds", "does not hold", "inconclusive")
        assert c["verdict"] in ok, c["id"]
    assert next(c for c in claims if c["id"] == "selected-epoch-trained")["verdict"] == "passes"

"""What the DiPS chapter's smoke run wrote to its ledger."""

import numpy as np


def test_dips_chapter_ledger(smoke_run):
    led = smoke_run("dips").ledger
    runs = led["tables"]["runs"]
    s = led["settings"]
    # every cell of Tables 2-4: kinds x repeats x taus x ks x five methods
    assert len(runs) == 2 * s["repeats"] * len(s["taus"]) * len(s["ks"]) * 5
    assert set(runs["method"]) == {"Random", "Hardest", "Influence", "DiPS@1", "DiPS"}
    explicit, implicit = runs[runs.setting == "explicit"], runs[runs.setting == "implicit"]
    assert explicit["rmse"].between(0.5, 2.0).all()
    assert implicit["recall@20"].between(0, 1).all() and (implicit["mrr@20"] <= implicit["recall@20"]).all()
    for name in ("table2_rmse", "table3_recall", "table4_mrr"):
        table = led["tables"][name]
        assert list(table.columns) == ["tau", "K", "Random", "Hardest", "Influence", "DiPS@1", "DiPS"]
        assert len(table) == len(s["taus"]) * len(s["ks"])
    # Figure 1: at learning rate 0 the queue gradient is the true gradient
    fig1 = led["tables"]["fig1_gradient"]
    assert abs(fig1.loc[fig1["lr"] == 0.0, "cosine"].iloc[0] - 1) < 1e-4
    # reservoir sampling keeps each of 25 items with probability 4/25
    assert np.allclose(led["metrics"]["reservoir_keep_freq"], 4 / 25, atol=0.02)
    fig2a, fig2b = led["tables"]["fig2a_transfer"], led["tables"]["fig2b_sessions"]
    assert set(fig2a["policy"]) == set(fig2b["policy"]) == {"Random", "DiPS"}
    assert fig2b[fig2b.K == 0]["recall@20"].nunique() == 1  # K = 0: the same session-only model
    ids = {c["id"] for c in led["claims"]}
    assert {"rmse-dips-below-random-tau1", "learned-best-explicit", "half-the-items-explicit", "dips-beats-dips1",
            "queue-gradient-close", "transfer-gru4rec", "sessions-augmented"} <= ids
    assert all(c["verdict"] in ("holds", "does not hold", "inconclusive") for c in led["claims"])

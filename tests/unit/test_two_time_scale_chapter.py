"""The chapter's settings, threshold plan and result frames (rec_lib.two_time_scale.chapter)."""

import numpy as np
import pandas as pd
import pytest
import torch

from rec_lib.config import SettingsError
from rec_lib.two_time_scale import chapter as tts
from rec_lib.two_time_scale.experiments import MethodResult


def test_presets_build_and_train_config_copies_the_knobs():
    for scale in ("smoke", "tutorial", "paper"):
        s = tts.CHAPTER.make(scale)
        cfg = tts.train_config(s)
        assert (cfg.dim, cfg.k_last, cfg.stage2_epochs, cfg.min_epochs) == (s.dim, s.k_last, s.stage2_epochs,
                                                                             s.min_epochs)
    assert tts.CHAPTER.make("paper").labels() == ["ml-25m"]
    assert tts.CHAPTER.make("tutorial").labels() == ["ml-100k", tts.SYNTHETIC]
    assert tts.CHAPTER.datasets(tts.CHAPTER.make("paper")) == ["ml-25m"]


@pytest.mark.parametrize("bad, match", [
    (dict(k_last=0), "K_LAST must be >= 1"),
    (dict(lr=0.0), "LR must be > 0"),
    (dict(test_rows=-1), "TEST_ROWS"),
    (dict(syn_exponent=1.0), "power-law exponents"),
    (dict(syn_long_term=1.5), "SYN_LONG_TERM"),
    (dict(syn_max_interactions=700), "SYN_ITEMS must be at least"),
    (dict(t_star=-2), "T_STAR must be >= 0"),
    (dict(t_star_grid=(-1, 5)), "T_STAR_GRID"),
    (dict(k_last=50), "K_LAST = 50 exceeds the threshold 40"),
    (dict(device="cuda", workers=2), "WORKERS=1"),
    (dict(attribution_t_star=-1), "ATTRIBUTION_T_STAR must be >= 0"),
    (dict(attribution_t_star=5), "ATTRIBUTION_T_STAR = 5 is below K_LAST"),
])
def test_bad_settings_fail_with_the_parameter_named(bad, match):
    with pytest.raises(SettingsError, match=match):
        tts.CHAPTER.make("tutorial", **bad)


def test_threshold_plan_order_fixed_then_grid_then_table4():
    s = tts.CHAPTER.make("tutorial")
    assert tts.threshold_plan(s, "ml-100k") == (None, None, s.t_star_grid)
    assert tts.threshold_plan(s, tts.SYNTHETIC) == (s.syn_t_star, s.syn_t_star, ())
    assert tts.threshold_plan(s, tts.CONTROL) == (s.syn_t_star, s.syn_t_star, ())
    fixed = tts.CHAPTER.make("tutorial", t_star=30, t_star_plus=50)
    assert tts.threshold_plan(fixed, "ml-100k") == (30, 50, ())
    paper = tts.CHAPTER.make("paper")
    assert tts.threshold_plan(paper, "lastfm-1k") == (100, 200, ())  # Table 4
    assert tts.threshold_plan(tts.CHAPTER.make("paper", t_star_plus=150), "ml-25m") == (200, 150, ())
    with pytest.raises(SettingsError, match="no threshold for ml-1m"):
        tts.CHAPTER.make("paper", dataset="ml-1m")


def _fake_out():
    """Two seeds of two methods whose ranks are known."""
    out = {"d": []}
    for seed in range(2):
        res = {}
        for name, r in (("A", [1, 2, 4]), ("B", [2, 2, 8 + seed])):
            ranks = torch.tensor(r)
            res[name] = MethodResult(name, ranks, {"mrr": float((1.0 / ranks.float()).mean()),
                                                   "recall@10": float((ranks <= 10).float().mean())},
                                     train_seconds=1.0 + seed, curve=[(0.5, 0.1), (1.0, 0.2)], t_star=3)
        out["d"].append((res, {"epochs": {"A": 2, "B": 3}, "test_users_T": np.array([0, 3, 7])}))
    return out


def test_runs_frame_paired_gap_and_curves():
    out = _fake_out()
    runs = tts.runs_frame(out)
    assert len(runs) == 4 and set(runs.columns) >= {"dataset", "method", "seed", "mrr", "train_s", "epochs"}
    gap, se = tts.paired_gap(runs, "d", "A", "B")
    # A: (1 + 1/2 + 1/4) / 3 per seed; B: (1/2 + 1/2 + 1/8) / 3, then (1/2 + 1/2 + 1/9) / 3
    diffs = np.array([(1.75 - 1.125) / 3, (1.75 - (1 + 1 / 9)) / 3])
    assert gap == pytest.approx(diffs.mean(), rel=1e-5)  # metrics in float32
    assert se == pytest.approx(diffs.std(ddof=1) / np.sqrt(2), rel=1e-4)
    with pytest.raises(KeyError, match="must both be"):
        tts.paired_gap(runs, "d", "A", "C")
    curves = tts.curves_frame(out)
    assert len(curves) == 4 and curves["mrr"].tolist() == [0.1, 0.2, 0.1, 0.2]


def test_buckets_frame_pools_the_seeds():
    b = tts.buckets_frame(_fake_out(), {"d": [0, 1, 5]})
    a = b[b["method"] == "A"].set_index("T_low")
    # bucket T = 0 holds rank 1 twice, bucket 1 <= T < 5 rank 2 twice, T >= 5 rank 4 twice
    assert a["mrr"].to_dict() == pytest.approx({0: 1.0, 1: 0.5, 5: 0.25})
    assert isinstance(b, pd.DataFrame) and set(b["dataset"]) == {"d"}


def test_segments_frame_splits_rows_by_activity():
    seg = tts.segments_frame(_fake_out(), {"d": 3})
    a = seg[(seg["method"] == "A") & (seg["seed"] == 0)].set_index("segment")
    # T = (0, 3, 7) with t* = 3: ranks 1 (new), 2 (inactive), 4 (active)
    assert a.loc["T = 0", "mrr"] == pytest.approx(1.0)
    assert a.loc["1 <= T <= t*", "mrr"] == pytest.approx(0.5)
    assert a.loc["T > t*", "mrr"] == pytest.approx(0.25)
    assert a.loc["all", "rows"] == 3 and a.loc["T > t*", "rows"] == 1


def test_run_attribution_runs_2ts_and_2ts_inf_at_the_fixed_threshold(monkeypatch):
    from rec_lib.two_time_scale import chapter

    s = tts.CHAPTER.make("smoke", n_seeds=3, attribution_seeds=2)
    seen = []

    def fake_run_jobs(jobs, workers):
        seen.extend(jobs)
        return [(j, ({"seed": j.seed}, {})) for j in reversed(jobs)]  # completion order differs

    monkeypatch.setattr(chapter, "run_jobs", fake_run_jobs)
    runs = tts.run_attribution(s, data="DATA")
    assert [r[0]["seed"] for r in runs] == [s.seed, s.seed + 1]  # back in seed order
    assert all(j.t_star == j.t_star_plus == s.attribution_t_star == 20 for j in seen)
    assert all(j.methods == ("2TS", "2TS-inf") and j.data == "DATA" and j.label == s.dataset for j in seen)
    with pytest.raises(ValueError, match="ATTRIBUTION_T_STAR >= 1"):
        tts.run_attribution(tts.CHAPTER.make("smoke", attribution_t_star=0), data="DATA")


def test_run_experiments_runs_n_seeds_on_the_real_data_and_syn_seeds_per_stream(monkeypatch):
    from rec_lib.two_time_scale import chapter

    s = tts.CHAPTER.make("smoke", n_seeds=2, syn_seeds=3)
    streams = []

    def fake_stream(settings, seed, control=False):
        streams.append((seed, control))
        return f"stream {seed} {control}"

    def fake_run_jobs(jobs, workers, then=None):
        queue, done = list(jobs), []
        while queue:
            j = queue.pop(0)
            done.append((j, ({"seed": j.seed}, {"t_star": 20, "t_star_plus": 20})))
            queue += list(then(j, done[-1][1])) if then else []
        return list(reversed(done))  # completion order differs

    monkeypatch.setattr(chapter, "run_jobs", fake_run_jobs)
    monkeypatch.setattr(chapter, "synthetic_stream", fake_stream)
    datasets = {s.dataset: "REAL", tts.SYNTHETIC: "SYN", tts.CONTROL: "CTRL"}
    out = tts.run_experiments(s, datasets)
    assert {k: len(v) for k, v in out.items()} == {s.dataset: 2, tts.SYNTHETIC: 3, tts.CONTROL: 3}
    for runs in out.values():
        assert [r[0]["seed"] for r in runs] == [s.seed + k for k in range(len(runs))]
    # seed 0 of each stream is the one passed in; seeds 1 and 2 draw their own
    assert sorted(streams) == sorted([(s.seed + k, c) for k in (1, 2) for c in (False, True)])
    with pytest.raises(SettingsError, match="SYN_SEEDS must be >= 1"):
        tts.CHAPTER.make("smoke", syn_seeds=0)

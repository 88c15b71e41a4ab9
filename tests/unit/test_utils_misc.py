import os
import time

import numpy as np
import pandas as pd
import pytest
import torch

from rec_lib import paths, plotting, reporting, utils


def test_seed_everything_reproduces_all_sources():
    a = utils.seed_everything(5)
    x = (a.rng.random(3), torch.rand(3, generator=a.torch_gen), torch.rand(2), np.random.rand(2))
    b = utils.seed_everything(5)
    y = (b.rng.random(3), torch.rand(3, generator=b.torch_gen), torch.rand(2), np.random.rand(2))
    for u, v in zip(x, y):
        assert np.allclose(np.asarray(u), np.asarray(v))
    c1, c2 = a.child(1), a.child(2)
    assert c1.rng.random() != c2.rng.random()
    with pytest.raises(ValueError, match="non-negative integer"):
        utils.seed_everything(-1)
    with pytest.raises(ValueError):
        utils.seed_everything(1.5)


def test_resolve_device():
    assert utils.resolve_device("cpu").type == "cpu"
    assert utils.resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="not one of"):
        utils.resolve_device("tpu")
    with pytest.raises(TypeError):
        utils.resolve_device(0)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="DEVICE='cpu'"):
            utils.resolve_device("cuda")


def test_stopwatch_and_rotation():
    sw = utils.Stopwatch()
    for _ in range(3):
        with sw("a"):
            pass
    assert sw.summary()["a"]["n"] == 3 and sw.total("a") >= 0 and sw.median("a") >= 0
    calls = []
    df = utils.benchmark_rotation({"slow": lambda: (calls.append("s"), time.sleep(0.02)),
                                   "fast": lambda: calls.append("f")}, repeats=3, warmup=1, baseline="slow")
    assert calls == ["s", "f"] * 4  # rotation: A, B, A, B, ...
    assert df.loc["fast", "speedup"] > 1 and df.loc["slow", "speedup"] == pytest.approx(1.0)
    df2, rounds = utils.benchmark_rotation({"a": lambda: time.sleep(0.001), "b": lambda: None}, repeats=3,
                                           warmup=0, rounds=True)
    assert list(rounds.columns) == ["a", "b"] and len(rounds) == 3 and (rounds["a"] >= 0.001).all()
    assert df2.loc["a", "median_s"] == pytest.approx(rounds["a"].median())
    with pytest.raises(ValueError):
        utils.benchmark_rotation({}, repeats=1)
    with pytest.raises(ValueError, match="baseline"):
        utils.benchmark_rotation({"a": lambda: None}, baseline="b")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with utils.atomic_write(target) as fh:
            fh.write("new")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and len(list(tmp_path.iterdir())) == 1
    with utils.atomic_write(target) as fh:
        fh.write("new")
    assert target.read_text() == "new"


def test_progress_respects_env(monkeypatch):
    monkeypatch.setenv("REC_LIB_PROGRESS", "0")
    bar = utils.progress(range(3), desc="x")
    assert bar.disable and list(bar) == [0, 1, 2]


def test_set_threads():
    before = torch.get_num_threads()
    try:
        assert utils.set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_paths_follow_env(monkeypatch, tmp_path):
    assert (paths.repo_root() / "_config.yml").exists()
    monkeypatch.setenv("REC_LIB_DATA", str(tmp_path))
    assert paths.raw_dir() == tmp_path / "raw" and paths.cache_dir() == tmp_path / "cache"
    monkeypatch.setenv("REC_LIB_RESULTS", str(tmp_path / "r"))
    assert paths.results_dir() == tmp_path / "r"
    monkeypatch.setenv("REC_LIB_ROOT", str(tmp_path))
    assert paths.repo_root() == tmp_path and paths.book_dir() == tmp_path / "book"


def test_mean_std_tables():
    runs = pd.DataFrame({"method": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "hr": [0.1, 0.3, 0.5, 0.5]})
    stats = reporting.mean_std(runs, "method")
    assert stats.loc["a", ("hr", "mean")] == pytest.approx(0.2)
    assert stats.loc["a", ("hr", "std")] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert stats.loc["b", ("n", "")] == 2
    table = reporting.mean_std_table(runs, "method", ["hr"], digits=2)
    assert table.loc["a", "hr"] == "0.20 ± 0.14" and table.loc["b", "runs"] == 2
    with pytest.raises(KeyError, match="not in the runs"):
        reporting.mean_std(runs, "method", ["ndcg"])


def test_plotting_helpers():
    import matplotlib

    matplotlib.use("Agg")
    plotting.use_style()
    colors = plotting.method_colors(["a", "b"])
    assert set(colors) == {"a", "b"} and colors["a"] != colors["b"]
    fig, axes = plotting.subplots(2)
    assert axes.shape == (1, 2)
    df = pd.DataFrame({"x": [0, 1, 0, 1], "y": [1.0, 2.0, 1.5, 2.5], "method": ["a", "a", "b", "b"]})
    ax = plotting.line_by_method(df, "x", "y", ax=axes[0, 0])
    assert len(ax.get_lines()) >= 2
    plotting.heatmap(np.eye(3), ax=axes[0, 1], center=0.0)
    axes[0, 1].bar([0, 1], [1.0, 2.0])
    plotting.annotate_bars(axes[0, 1])
    plotting.log_axes(axes[0, 0])
    assert axes[0, 0].get_xscale() == "log"
    assert len(axes[0, 1].texts) == 2
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_isolated_globals_leaves_the_callers_generators_and_threads_as_they_were():
    import random


    from rec_lib.utils import isolated_globals, seed_everything, set_threads

    seed_everything(5)
    threads = torch.get_num_threads()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    seed_everything(5)
    with isolated_globals():
        seed_everything(123)  # what a task run in this process does
        set_threads(1)
        torch.randn(100)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert torch.get_num_threads() == threads

import json
from dataclasses import dataclass

import pandas as pd
import pytest

from rec_lib.config import BaseSettings, SettingsError, make_settings
from rec_lib.ledger import Ledger, claims_frame, read_ledger, verdict


@dataclass(frozen=True)
class Toy(BaseSettings):
    epochs: int = 10
    lr: float = 0.01
    ks: tuple[int, ...] = (5, 10)
    name: str | None = None


PRESETS = {"smoke": {"epochs": 1}, "tutorial": {}, "paper": {"epochs": 100, "lr": 1e-3}}


def test_presets_and_overrides():
    s = make_settings(Toy, PRESETS, "smoke")
    assert s.epochs == 1 and s.scale == "smoke"
    s = make_settings(Toy, PRESETS, "paper", EPOCHS=None, lr=1, ks=[1, 2], seed=3)
    assert s.epochs == 100 and s.lr == 1.0 and isinstance(s.lr, float) and s.ks == (1, 2) and s.seed == 3
    assert "epochs" in str(s) and s.as_dict()["epochs"] == 100


@pytest.mark.parametrize("kwargs, match", [
    ({"scale": "huge"}, "SCALE"),
    ({"scale": "smoke", "epoch": 3}, "unknown parameter 'epoch'"),
    ({"scale": "smoke", "epochs": "3"}, "EPOCHS='3' has type str"),
    ({"scale": "smoke", "epochs": True}, "EPOCHS=True"),
    ({"scale": "smoke", "ks": (1, "a")}, "KS"),
    ({"scale": "smoke", "seed": -1}, "SEED must be >= 0"),
])
def test_bad_settings_raise(kwargs, match):
    scale = kwargs.pop("scale")
    with pytest.raises(SettingsError, match=match):
        make_settings(Toy, PRESETS, scale, **kwargs)


def test_presets_must_cover_every_scale():
    with pytest.raises(SettingsError, match="lack the scales"):
        make_settings(Toy, {"smoke": {}}, "smoke")


@pytest.mark.parametrize("measured, op, target, tol, expected", [
    (5.0, ">", 3.0, 0.0, "holds"),
    (2.0, ">", 3.0, 0.0, "does not hold"),
    (3.05, ">", 3.0, 0.1, "inconclusive"),
    (3.0, ">=", 3.0, 0.0, "holds"),
    (1.0, "<", 3.0, 0.5, "holds"),
    (10.0, "between", (5.0, 30.0), 0.0, "holds"),
    (4.0, "between", (5.0, 30.0), 0.0, "does not hold"),
    (4.9, "between", (5.0, 30.0), 0.5, "inconclusive"),
    (float("nan"), ">", 1.0, 0.0, "inconclusive"),
])
def test_verdict(measured, op, target, tol, expected):
    assert verdict(measured, op, target, tol) == expected


def test_ledger_roundtrip(results_tmp):
    s = make_settings(Toy, PRESETS, "smoke")
    led = Ledger("toy", s)
    led.log_metric("recall@10", 0.25)
    import numpy as np
    led.log_metric("array", np.arange(3))
    led.log_table("runs", pd.DataFrame({"method": ["a", "b"], "x": [1.5, 2.5]}))
    led.log_timing("train_s", 1.25)
    led.claim("c1", "A beats B", paper="+10%", ours=0.123456, verdict="holds")
    led.claim("c1", "A beats B", paper="+10%", ours=0.2, verdict="does not hold")  # replaces
    path = led.save()
    assert path == results_tmp / "toy.json"
    back = read_ledger("toy")
    assert back["settings"]["scale"] == "smoke" and back["metrics"]["recall@10"] == 0.25
    assert back["metrics"]["array"] == [0, 1, 2]
    assert back["tables"]["runs"]["x"].tolist() == [1.5, 2.5]
    assert [c["verdict"] for c in back["claims"]] == ["does not hold"]
    assert "torch" in back["versions"]
    frame = claims_frame(back["claims"])
    assert frame.loc["c1", "verdict"].endswith("does not hold")
    assert led.claims_frame().shape[0] == 1


def test_ledger_errors(results_tmp):
    with pytest.raises(ValueError, match="identifier"):
        Ledger("bad name!")
    led = Ledger("toy")
    with pytest.raises(ValueError, match="verdict"):
        led.claim("x", "y", "1", 1.0, verdict="maybe")
    with pytest.raises(TypeError, match="DataFrame"):
        led.log_table("t", [1, 2])
    with pytest.raises(TypeError, match="cannot store"):
        led.log_metric("obj", object())
    with pytest.raises(FileNotFoundError, match="no ledger"):
        read_ledger("missing")
    (results_tmp).mkdir(parents=True, exist_ok=True)
    (results_tmp / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_ledger("broken")
    (results_tmp / "partial.json").write_text(json.dumps({"chapter": "partial"}))
    with pytest.raises(ValueError, match="lacks the key"):
        read_ledger("partial")


def test_ledger_nan_becomes_null(results_tmp):
    led = Ledger("nan")
    led.log_metric("x", float("nan"))
    led.save()
    assert read_ledger("nan")["metrics"]["x"] is None


def test_chapter_spec_makes_settings_and_lists_datasets():
    from rec_lib.config import ChapterSpec
    from rec_lib.data.chapter import CHAPTER

    spec = ChapterSpec("toy", Toy, PRESETS)
    s = spec.make("smoke", epochs=2)
    assert s.epochs == 2 and spec.datasets(s) == ["ml-100k"]
    assert CHAPTER.name == "data_protocols" and CHAPTER.datasets(CHAPTER.make("smoke")) == ["ml-100k"]


def test_ledger_roundtrips_multiindex_tables(results_tmp):
    led = Ledger("multi")
    cols = pd.MultiIndex.from_tuples([("method", ""), ("d1", "mrr"), ("d2", "mrr")])
    wide = pd.DataFrame([["A", "0.1 ± 0.0", "0.2 ± 0.0"], ["B", "0.3 ± 0.0", "0.4 ± 0.0"]], columns=cols)
    rows = pd.DataFrame({"x": [1.0, 2.0]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)]))
    led.log_table("wide", wide)
    led.log_table("rows", rows)
    led.save()
    back = read_ledger("multi")["tables"]
    assert back["wide"].columns.tolist() == cols.tolist()
    assert back["wide"].iloc[:, 0].tolist() == ["A", "B"] and back["wide"][("d2", "mrr")].tolist()[1] == "0.4 ± 0.0"
    assert back["rows"].index.tolist() == [("a", 1), ("b", 2)] and back["rows"]["x"].tolist() == [1.0, 2.0]

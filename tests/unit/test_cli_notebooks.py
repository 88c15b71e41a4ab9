import json

import nbformat
import pytest

from rec_lib import notebooks
from rec_lib.__main__ import main


def test_chapters_follow_the_toc():
    names = notebooks.chapters()
    assert names[0] == "data_protocols"
    assert all(notebooks.chapter_path(n).exists() for n in names)
    with pytest.raises(FileNotFoundError, match="chapters:"):
        notebooks.chapter_path("nope")


def test_every_chapter_has_a_parameters_cell_and_outputs():
    for name in notebooks.chapters():
        nb = nbformat.read(notebooks.chapter_path(name), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, f"{name}: exactly one cell tagged 'parameters'"
        assert "SCALE" in params[0].source and "SEED" in params[0].source
        assert any(c.outputs for c in code), f"{name}: committed without outputs"
        assert nb.metadata["kernelspec"]["name"] == "python3"


def test_cli_lists_chapters_and_rejects_unknown(capsys):
    assert main(["chapters"]) == 0
    assert "data_protocols" in capsys.readouterr().out
    assert main(["execute", "no_such_chapter"]) == 2
    assert "no chapter" in capsys.readouterr().err

"""The example notebooks stay valid: parseable, code that compiles, no stored outputs."""

import json
import pathlib

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_compiles_and_has_no_outputs(path):
    notebook = json.loads(path.read_text())
    code_cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code_cells
    for index, cell in enumerate(code_cells):
        source = "".join(cell["source"])
        compile(source, f"{path.name}[{index}]", "exec")
        assert not cell.get("outputs"), f"{path.name} cell {index} has stored outputs"
        assert "keras_dcp" in "".join("".join(c["source"]) for c in code_cells)

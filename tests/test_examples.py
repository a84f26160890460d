"""The example notebooks and the docs site stay consistent (fast, no execution).

CI executes the notebooks in QUICK mode and builds the site with ``mkdocs build --strict``
(``.ci/run``); these checks catch the structural mistakes early, without Jupyter or MkDocs
installed: one ``parameters`` cell with ``QUICK = True``, code that compiles, no large stored
outputs, every notebook in the site's nav and the README, every nav entry an existing file.
"""

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))
#: The largest stored notebook (outputs included) we accept, in bytes.
MAX_NOTEBOOK_BYTES = 100_000
#: The largest stored output of one cell, in characters.
MAX_OUTPUT_CHARS = 5_000


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell):
    return "".join(cell["source"])


def nav_entries():
    """Every ``.md`` path in mkdocs.yml's nav (plain-text parse: no YAML library needed)."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text.split("\nnav:\n", 1)[1]
    nav = re.split(r"\n(?=\S)", nav, maxsplit=1)[0]  # up to the next top-level key
    return re.findall(r"^\s*-\s*(?:[^\n]*?:\s*)?([\w./-]+\.md)\s*$", nav, flags=re.MULTILINE)


def test_notebooks_are_numbered():
    names = [path.name for path in NOTEBOOKS]
    assert len(names) == 5, names
    for index, name in enumerate(names, start=1):
        assert re.fullmatch(rf"0{index}_[a-z0-9_]+\.ipynb", name), name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_compiles(path):
    code_cells = [cell for cell in load(path)["cells"] if cell["cell_type"] == "code"]
    assert code_cells
    for index, cell in enumerate(code_cells):
        compile(source(cell), f"{path.name}[{index}]", "exec")
    assert "keras_dcp" in "".join(source(cell) for cell in code_cells)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_one_parameters_cell_with_quick(path):
    cells = load(path)["cells"]
    tagged = [cell for cell in cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
    cell = tagged[0]
    assert cell["cell_type"] == "code"
    assert re.search(r"^QUICK = True\b", source(cell), flags=re.MULTILINE), "the stored default must be QUICK = True"
    # Papermill injects its values after this cell: the cell itself only assigns.
    for line in source(cell).splitlines():
        stripped = line.split("#", 1)[0].strip()
        assert not stripped or re.match(r"^[A-Z_][A-Z0-9_, ]*=", stripped) or stripped.startswith(("\"", "'", "]", ")", "}")) \
            or line.startswith((" ", "\t")), f"{path.name}: not an assignment in the parameters cell: {line!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_what_it_teaches_and_its_time(path):
    first = load(path)["cells"][0]
    assert first["cell_type"] == "markdown"
    text = source(first)
    assert text.startswith(f"# {path.name[:2]} ")
    assert "**Time.**" in text and "QUICK = True" in text and "QUICK = False" in text
    assert "QUICK_TIME_NOTE" not in text and "(pending)" not in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_large_outputs(path):
    assert path.stat().st_size <= MAX_NOTEBOOK_BYTES, f"{path.name} is {path.stat().st_size} bytes"
    for index, cell in enumerate(load(path)["cells"]):
        size = len(json.dumps(cell.get("outputs", [])))
        assert size <= MAX_OUTPUT_CHARS, f"{path.name} cell {index} stores {size} characters of output"
        assert not cell.get("attachments"), f"{path.name} cell {index} has attachments"


def test_site_nav_points_at_existing_files():
    entries = nav_entries()
    assert "index.md" in entries and "limits.md" in entries
    for entry in entries:
        if entry.startswith("notebooks/") and entry != "notebooks/index.md":
            # Generated at build time from examples/ (docs/tools/notebooks_hook.py).
            assert (ROOT / "examples" / (pathlib.Path(entry).stem + ".ipynb")).exists(), entry
        else:
            assert (ROOT / "docs" / entry).exists(), f"mkdocs.yml nav lists {entry}, which is not in docs/"
    for path in NOTEBOOKS:
        assert f"notebooks/{path.stem}.md" in entries, f"{path.name} is not in the site's nav"


def test_site_build_files_exist():
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for relative in re.findall(r"(docs/tools/[\w.]+\.py)", text):
        assert (ROOT / relative).exists(), relative
    for module in re.findall(r"^::: ([\w.]+)", "\n".join(p.read_text() for p in (ROOT / "docs" / "api").glob("*.md")),
                             flags=re.MULTILINE):
        parts = module.split(".")
        candidates = [ROOT.joinpath(*parts[:n]) for n in range(len(parts), 0, -1)]
        assert any(c.with_suffix(".py").exists() or (c / "__init__.py").exists() for c in candidates), module


def test_readme_links_the_notebooks_and_the_site():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert f"examples/{path.name}" in readme, f"README does not link {path.name}"
    assert "mkdocs" in readme and "docs/limits.md" in readme


def _load_docs_tool(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"docs_tool_{name}", ROOT / "docs" / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docstrings_become_markdown_for_the_api_reference():
    pytest.importorskip("griffe")  # the `docs` extra
    tool = _load_docs_tool("griffe_docstrings")
    text = "Sum.\n\n.. math::\n\n    y = \\beta x\n\nSee :func:`~keras_dcp.ops.deception` and :mod:`keras_dcp.ops`.\n\n>>> 1 + 1\n2\n\nArgs:\n    x: a value."
    out = tool.to_markdown(text)
    assert "$$\ny = \\beta x\n$$" in out
    assert "See `deception` and `keras_dcp.ops`." in out
    assert "```pycon\n>>> 1 + 1\n2\n```" in out
    assert out.endswith("Args:\n    x: a value.")


def test_notebook_pages_rewrite_links_for_the_site():
    pytest.importorskip("mkdocs")  # the `docs` extra
    tool = _load_docs_tool("notebooks_hook")
    assert tool._rewrite("../docs/limits.md#threat") == "../limits.md#threat"
    assert tool._rewrite("03_knockoffnets.ipynb") == "03_knockoffnets.md"
    assert tool._rewrite("https://arxiv.org/abs/2309.01838") == "https://arxiv.org/abs/2309.01838"
    page = tool.notebook_markdown(NOTEBOOKS[0])
    assert page.startswith("# 01 ") and "# parameters (papermill" in page and "```python" in page
    assert "](../docs/" not in page

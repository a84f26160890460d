"""MkDocs hook: the notebooks in examples/ as pages of the site, generated at build time.

Each ``examples/NN_name.ipynb`` becomes the page ``notebooks/NN_name.md``
(markdown cells as they are, code cells as Python blocks, the ``parameters``
cell marked) and is copied beside it for download. The notebooks are stored
without outputs, so nothing is lost by not rendering outputs, and the pages go
through MkDocs' own Markdown, so ``mkdocs build --strict`` checks their links
like any other page's. Links in the notebooks are written for GitHub, relative
to ``examples/``; ``../docs/X`` becomes ``../X`` and ``NN_name.ipynb`` the page
``NN_name.md``. Docs pages link the notebooks the same way (``../examples/NN_name.ipynb``
from ``docs/``, which GitHub shows); those links are pointed at the generated pages.
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _rewrite(target: str) -> str:
    if re.match(r"^[a-z]+:", target) or target.startswith("#"):
        return target
    path, _, anchor = target.partition("#")
    if path.startswith("../docs/"):
        path = "../" + path[len("../docs/"):]
    elif re.fullmatch(r"[0-9]{2}_[A-Za-z0-9_]+\.ipynb", path):
        path = path[: -len(".ipynb")] + ".md"
    return path + ("#" + anchor if anchor else "")


def notebook_markdown(path: Path) -> str:
    """The page for one notebook."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    parts = []
    for index, cell in enumerate(notebook["cells"]):
        source = "".join(cell["source"]).rstrip()
        if cell["cell_type"] == "markdown":
            parts.append(LINK.sub(lambda m: f"]({_rewrite(m.group(1))})", source))
            if index == 0:
                parts.append(
                    f"[Download the notebook]({path.name}) · run it with "
                    f"`papermill {path.name} out.ipynb -p QUICK False` (full settings) or open it in Jupyter."
                )
        elif cell["cell_type"] == "code":
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                source = "# parameters (papermill: -p NAME VALUE)\n" + source
            parts.append(f"```python\n{source}\n```")
    return "\n\n".join(parts) + "\n"


def on_page_markdown(markdown, page, config, files):
    """Links from docs pages to ``examples/NN_name.ipynb`` (right on GitHub) -> the generated page."""
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(match):
        target = match.group(1)
        path, _, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(here, path))
        found = re.fullmatch(r"\.\./examples/([0-9]{2}_[A-Za-z0-9_]+)\.ipynb", resolved)
        if not found:
            return match.group(0)
        page_path = posixpath.relpath(f"notebooks/{found.group(1)}.md", here or ".")
        return f"]({page_path}{'#' + anchor if anchor else ''})"

    return LINK.sub(rewrite, markdown)


def on_files(files, config):
    for path in sorted(EXAMPLES.glob("*.ipynb")):
        files.append(File.generated(config, f"notebooks/{path.stem}.md", content=notebook_markdown(path)))
        files.append(File.generated(config, f"notebooks/{path.name}", abs_src_path=str(path)))
    return files


def on_serve(server, config, builder):
    server.watch(str(EXAMPLES))
    return server

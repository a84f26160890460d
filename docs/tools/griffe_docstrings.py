"""A griffe extension for the API reference: this package's reST-flavoured docstrings as Markdown.

The docstrings are Google style (``Args:``, ``Returns:``) with three reST habits
that Markdown would mangle, rewritten here before mkdocstrings renders them:

* doctest lines (``>>> ...``, ``... ...`` and their output) would read as nested
  block quotes: they become fenced ``pycon`` blocks;
* ``.. math::`` blocks become ``$$ ... $$`` for ``pymdownx.arithmatex`` (MathJax);
* roles (``:func:`~keras_dcp.ops.deception```, ``:class:``, ``:mod:``, ...)
  become inline code with the name as written (the last part after ``~``).

Loaded by ``mkdocs.yml`` (``plugins: mkdocstrings: handlers: python: options:
extensions``). The docstrings themselves stay as they are, for ``help()`` and
the doctests.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc|const):`(~?)([^`]+)`")
PROMPT = re.compile(r"^(\s*)(>>>|\.\.\.)( |$)")


def _role(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _math_block(lines: list[str], start: int, out: list[str]) -> int:
    """Copy the indented body of the ``.. math::`` at ``start`` as ``$$ ... $$``; return the next line."""
    indent = len(lines[start]) - len(lines[start].lstrip())
    body, i = [], start + 1
    while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
        body.append(lines[i].strip())
        i += 1
    while body and not body[-1]:
        body.pop()
    pad = " " * indent
    out.extend([f"{pad}$$", *(f"{pad}{line}" for line in body if line), f"{pad}$$", ""])
    return i


def _doctest_block(lines: list[str], start: int, out: list[str]) -> int:
    """Fence the doctest at ``start`` (prompts and output, up to a blank line); return the next line."""
    indent = PROMPT.match(lines[start]).group(1)
    i = start
    block = []
    while i < len(lines) and lines[i].strip():
        block.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].strip())
        i += 1
    out.extend([f"{indent}```pycon", *(f"{indent}{line}" for line in block), f"{indent}```"])
    return i


def to_markdown(text: str) -> str:
    """The docstring ``text`` with doctests fenced, math blocks for MathJax and roles as code."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == ".. math::":
            i = _math_block(lines, i, out)
        elif PROMPT.match(line) and line.lstrip().startswith(">>>"):
            i = _doctest_block(lines, i, out)
        else:
            out.append(ROLE.sub(_role, line))
            i += 1
    return "\n".join(out)


class ReSTToMarkdown(griffe.Extension):
    """Rewrite every docstring of the loaded objects (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)

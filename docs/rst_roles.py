"""A griffe extension for the API reference (mkdocs.yml): the docstrings' reST markup, as Markdown.

The package's docstrings are numpy style with a little reStructuredText: roles such as
``:func:`step_run``` or ``:class:`~sqlalchemy.MetaData``` and literal blocks introduced by ``::``.
mkdocstrings renders docstrings as Markdown, where those would show as written. This turns a role into
inline code (the last dotted part when the target starts with ``~``, as Sphinx shows it) and a
paragraph-ending ``::`` into ``:``; the indented block after it is already a Markdown code block.
Nothing else is changed, and the source files are not touched.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|data|attr|exc|obj|const):`(~?)([^`]+)`")
LITERAL = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)  # "text::" at the end of a line
BARE_LITERAL = re.compile(r"^([ \t]*)::[ \t]*$", re.MULTILINE)  # a line holding only "::"


def _role(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def markdown(text: str) -> str:
    """The docstring ``text`` with its reST roles and literal-block markers written as Markdown."""
    text = ROLE.sub(_role, text)
    text = LITERAL.sub(":", text)
    return BARE_LITERAL.sub(r"\1", text)


class RstRoles(griffe.Extension):
    """Rewrites every loaded object's docstring (in memory) with :func:`markdown`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)

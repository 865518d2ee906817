"""Report formats: each turns an AuditResult into text, one module per format with a
`render(result, terminal)` function (terminal: a person reads stdout on a terminal).
FORMATS is the registry (name -> module) that the command line's --format choices are
built from: a new format is one module and one line."""

from __future__ import annotations

import importlib
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without typing's import

if TYPE_CHECKING:
    from pysbx.audit.engine import AuditResult

FORMATS = {
    "text": "pysbx.audit.formats.text",
    "json": "pysbx.audit.formats.json_report",
    "sarif": "pysbx.audit.formats.sarif",
    "junit": "pysbx.audit.formats.junit",
}


def renderer(name: str) -> Callable[[AuditResult, bool], str]:
    """The render function of format `name` (its module is imported only when chosen)."""
    render: Callable[[AuditResult, bool], str] = importlib.import_module(FORMATS[name]).render
    return render

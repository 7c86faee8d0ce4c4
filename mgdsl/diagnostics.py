"""Located diagnostics: every error a user sees points at file:line:col with the source line."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """Where a node came from, 1-based line and column (end exclusive)."""
    line: int
    col: int
    end_line: int
    end_col: int


@dataclass
class Diagnostic:
    message: str
    span: Span | None = None
    hint: str | None = None
    severity: str = "error"


class SpecError(Exception):
    """Raised with all diagnostics of a spec; the CLI prints them and exits 2."""

    def __init__(self, diagnostics: list[Diagnostic], source: "Source | None" = None):
        self.diagnostics = diagnostics
        self.source = source
        super().__init__()

    def __str__(self) -> str:
        return render(self.diagnostics, self.source)


@dataclass
class Source:
    path: str
    text: str
    lines: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.lines = self.text.splitlines()


def render_one(d: Diagnostic, source: Source | None) -> str:
    """Format like a C compiler: location, message, source line, caret, hint."""
    path = source.path if source else "mgdsl"
    if d.span is None:
        out = [f"{path}: {d.severity}: {d.message}"]
    else:
        out = [f"{path}:{d.span.line}:{d.span.col}: {d.severity}: {d.message}"]
        if source and 1 <= d.span.line <= len(source.lines):
            text = source.lines[d.span.line - 1].expandtabs(1)
            width = d.span.end_col - d.span.col if d.span.end_line == d.span.line else len(text) - d.span.col + 1
            out.append(f"  {text}")
            out.append("  " + " " * (d.span.col - 1) + "^" + "~" * max(0, min(width, 80) - 1))
    if d.hint:
        out.append(f"  hint: {d.hint}")
    return "\n".join(out)


def render(diagnostics: list[Diagnostic], source: Source | None) -> str:
    return "\n".join(render_one(d, source) for d in diagnostics)


def did_you_mean(name: str, candidates) -> str | None:
    """A hint naming the closest known spelling, if one is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None

"""Located diagnostics: every error a user sees points at file:line:col with the source line."""
from __future__ import annotations

import difflib
import re
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
    grid: int | None = field(default=None, compare=False)  # the grid being unrolled when it was found, if any


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


def install_hint(extra: str) -> str:
    """The one spelling of a missing optional dependency's fix (pyproject.toml's extras; `all` holds them all)."""
    return f"pip install 'mgdsl[{extra}]', or every extra at once: pip install 'mgdsl[all]'"


def did_you_mean(name: str, candidates) -> str | None:
    """A hint naming the closest known spelling, if one is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=8, cutoff=0.6)
    if not close:
        return None
    score = difflib.SequenceMatcher(None, name, close[0]).ratio()  # every spelling as close as the closest: `conv`
    best = sorted(c for c in close if difflib.SequenceMatcher(None, name, c).ratio() == score)  # is conv1..conv7
    names = [f"'{c}'" for c in best]
    return f"did you mean {names[0] if len(names) == 1 else ', '.join(names[:-1]) + ' or ' + names[-1]}?"


_LABEL = re.compile(r"\b([A-Za-z_][\w']*)\[[0-9, ]+\]")  # an instance label: B[2], B[1, 2]


def merge_repeats(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """One cause, one error: diagnostics at one place whose texts differ only in an instance's index (a wrong
    B[l] is found once per grid as the scheme unrolls) become one that names the operator and lists the grids."""
    groups: dict[tuple, list[Diagnostic]] = {}
    for d in diagnostics:
        key = (d.span, d.severity, _LABEL.sub(r"\1[]", d.message), _LABEL.sub(r"\1[]", d.hint or "")) \
            if d.span is not None else (id(d),)
        groups.setdefault(key, []).append(d)
    return [g[0] if len(g) == 1 else _merged(g) for g in groups.values()]


def _merged(group: list[Diagnostic]) -> Diagnostic:
    """The first of a group, with every label that differs within the group written bare (B, not B[1])."""
    def text(pick) -> str | None:
        if pick(group[0]) is None:
            return None
        labels = [[m.group(0) for m in _LABEL.finditer(pick(d) or "")] for d in group]
        k = iter(range(len(labels[0])))

        def keep(m: re.Match) -> str:
            i = next(k)
            return m.group(0) if all(len(ls) > i and ls[i] == m.group(0) for ls in labels) else m.group(1)
        return _LABEL.sub(keep, pick(group[0]))
    grids = list(dict.fromkeys(d.grid for d in group if d.grid is not None))
    where = f" (on grids {', '.join(map(str, grids))})" if len(grids) > 1 else ""
    first = group[0]
    return Diagnostic(text(lambda d: d.message) + where, first.span, text(lambda d: d.hint), first.severity,
                      first.grid)


class Fail(Exception):
    """One located error inside elaboration; caught per equation so that all errors are reported."""

    def __init__(self, message: str, span: Span | None, hint: str | None = None):
        super().__init__(message)
        self.diag = Diagnostic(message, span, hint)


@dataclass
class Reporter:
    """The diagnostics of one elaboration, shared by its stages; each error is reported once."""
    source: Source
    diags: list[Diagnostic] = field(default_factory=list)

    def error(self, message: str, span: Span | None, hint: str | None = None, grid: int | None = None) -> None:
        d = Diagnostic(message, span, hint, grid=grid)
        if not any(x.message == d.message and x.span == d.span for x in self.diags):
            self.diags.append(d)

    def add(self, f: Fail, grid: int | None = None) -> None:
        self.error(f.diag.message, f.diag.span, f.diag.hint, grid)

    def guard(self, fn, *args):
        """fn(*args), or None with its error recorded."""
        try:
            return fn(*args)
        except Fail as f:
            self.add(f)
            return None

    def stop_if_any(self) -> None:
        if self.diags:
            raise SpecError(merge_repeats(self.diags), self.source)

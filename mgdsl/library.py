"""The files that ship with mgdsl (grammar, spec library), found by name with importlib.resources.

In the repository they live in `grammars/` and `specs/` (the one source); the wheel maps them into the
package as `mgdsl/grammars` and `mgdsl/specs` at build time (pyproject.toml, package-dir)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.resources.abc is Python 3.11+; annotations only
    from importlib.resources.abc import Traversable

from .diagnostics import Diagnostic, Source, SpecError, did_you_mean

SUFFIX = ".mg"


def resource_dir(name: str) -> Traversable:
    """The packaged folder `mgdsl/NAME` of an installed wheel, else the repository's `NAME/` (source tree)."""
    packaged = resources.files("mgdsl") / name
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / name


def grammar_text() -> str:
    """The lark grammar of the language."""
    return (resource_dir("grammars") / "mg.lark").read_text(encoding="utf-8")


def grammar_keywords() -> list[str]:
    """The word terminals of the grammar (`MODEL: "model"`, `EQKIND.2: "init" | "step" | ...`): the language's
    keywords, for the pygments lexer, the TextMate grammar and `mgdsl lsp` completion alike."""
    found = []
    for line in grammar_text().splitlines():
        m = re.match(r'^[A-Z_]+(?:\.\d+)?\s*:\s*(".*")\s*$', line)
        if m:
            found += [w for w in re.findall(r'"([^"]*)"', m.group(1)) if w.isalpha() and len(w) > 1]
    return found


@dataclass(frozen=True)
class BundledSpec:
    """One spec of the library: `name` as the user types it (`table2/resnet18`), `path` where it is."""
    name: str
    path: str


def _walk(folder: Traversable, prefix: str = ""):
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(SUFFIX):
            yield BundledSpec(prefix + entry.name[: -len(SUFFIX)], str(entry))


def bundled() -> list[BundledSpec]:
    """Every spec of the library, sorted by name (top level first)."""
    specs = resource_dir("specs")
    found = list(_walk(specs)) if specs.is_dir() else []
    return sorted(found, key=lambda s: (s.name.count("/"), s.name))


def _candidates(name: str) -> list[str]:
    """`mgnet`, `mgnet.mg`, `specs/mgnet.mg` all name the bundled `mgnet` (README commands work anywhere)."""
    out = [name]
    if name.endswith(SUFFIX):
        out.append(name[: -len(SUFFIX)])
    out += [c[len("specs/"):] for c in list(out) if c.startswith("specs/")]
    return out


def spec_path(spec: str) -> str:
    """A spec argument to a readable path: an existing path wins, then a bundled name; else a located error."""
    if Path(spec).exists():
        return spec
    by_name = {s.name: s.path for s in bundled()}
    for c in _candidates(spec):
        if c in by_name:
            return by_name[c]
    hint = did_you_mean(_candidates(spec)[-1], by_name) or "`mgdsl list` shows the bundled specs"
    raise SpecError([Diagnostic(f"no such file or bundled spec: {spec}", None, hint)], Source(spec, ""))

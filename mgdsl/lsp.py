"""`mgdsl lsp`: a Language Server Protocol server for .mg specs over stdio (pygls), built on the compiler's own
stages (parse, elaborate, check, cost, fmt), so an editor shows exactly what `mgdsl check` says. No torch.

Parse errors do not hide the rest (parse_recovering): each statement that does not parse is blanked (spaces,
so every span stays put) and the text parsed again, one error per such statement; the text without them is
then elaborated and checked, and its errors shown, except those that only say a name from a blanked line is
missing (the line being typed)."""
from __future__ import annotations

import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lsprotocol import types as T

from . import syntax as S
from .diagnostics import Diagnostic, Source, Span, SpecError

SOURCE = "mgdsl"
IDENT = r"[A-Za-z_][A-Za-z0-9_']*"
DID_YOU_MEAN = re.compile(r"did you mean ('[^']+'(?:(?:, | or )'[^']+')*)\?")  # one name, or several as close
# errors that only report a missing name: hidden when the name is on a line blanked for recovery
MISSING = re.compile(r"^(undefined |unknown |no definition of |the model has no |.* is defined but never used"
                     r"|.* is not bound|.* there is no `)")
SCOPE_WORDS = {"l": "grid", "i": "smoothing step", "j": "step"}
NAME_KINDS = {"op": T.CompletionItemKind.Class, "param": T.CompletionItemKind.Constant,
              "state": T.CompletionItemKind.Variable}


# ---------------------------------------------------------------- analysis (pure: text in, facts out)

@dataclass
class Analysis:
    """One version of a document as the compiler sees it: diagnostics, the AST and (if it compiled) the IR."""
    text: str
    lines: list[str]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    model: S.Model | None = None
    ir: object = None
    blanked: set[int] = field(default_factory=set)  # 1-based lines dropped to get past parse errors
    version: int | None = None  # the document version analysed
    resolved: object = None  # resolve.Resolved (grids, spaces, params) of a spec that resolves but does not compile
    _macs: object = None

    @property
    def macs(self):
        """MACs per instance (mgdsl.cost), computed on the first hover that needs them."""
        if self._macs is None and self.ir is not None:
            from .cost import macs
            self._macs = macs(self.ir)
        return self._macs


def _culprit(lines: list[str], span: Span) -> int:
    """The line to drop for a parse error: the error's own line, or, when the unexpected token starts its line
    (`Ar[l] = ...` after an unclosed `conv3(u -> f`), the unfinished statement on the line before it."""
    line = lines[span.line - 1] if span.line <= len(lines) else ""
    if line[:span.col - 1].strip():
        return span.line
    prev = next((n for n in range(span.line - 1, 0, -1) if lines[n - 1].split("#")[0].strip()), None)
    if prev is None or lines[prev - 1].rstrip().endswith("{"):
        return span.line
    return prev


def parse_recovering(text: str, path: str) -> tuple[S.Model | None, list[Diagnostic], set[int]]:
    """(the AST of the text with unparsable statements blanked, one error per such statement, their lines).

    The first error is the one `mgdsl check` reports first; the compiler's cascade (each line after an unclosed
    bracket) is replaced by one error per statement that really does not parse."""
    import lark
    if "\x00" in text or not text.strip():
        try:
            return S.parse(text, path), [], set()
        except SpecError as e:
            return None, list(e.diagnostics), set()
    lines, errors, blanked, closed, last = text.split("\n"), [], set(), False, 0
    original = list(lines)
    for _ in range(64):
        try:
            current = "\n".join(lines) + ("\n}" if closed else "")
            tree = S._parser().parse(current)
        except lark.exceptions.UnexpectedInput as e:
            d = S._syntax_diag(e, current)  # with the text: a misspelt keyword gets check's did-you-mean
            if d.span is not None and d.span.line > len(lines):  # in the `}` supplied below: nothing new
                return None, errors, blanked
            errors.append(d)
            if d.message == "unexpected end of file" or d.span is None:  # a missing `}`: supply it, once
                if closed or d.span is None:
                    return None, errors, blanked
                closed = True
                continue
            n = _culprit(lines, d.span)
            if len(errors) > 1 and errors[-2].span == d.span and last != d.span.line:
                # the same error after dropping the line before it: that line was fine; put it back, drop this one
                errors.pop()
                lines[last - 1] = original[last - 1]
                blanked.discard(last)
                n = d.span.line
            last = n
            if n in blanked or not lines[n - 1].strip():
                return None, errors, blanked
            blanked.add(n)
            lines[n - 1] = " " * len(lines[n - 1])
            continue
        model = S.ToAST().transform(tree)
        return S.Model(model.name, model.items, model.span, comments=S._comments(text)), errors, blanked
    return None, errors, blanked


def _caused_by_blanking(d: Diagnostic, words: set[str]) -> bool:
    """An error that only says a name is missing, and the name was on a blanked line."""
    if not MISSING.match(d.message):
        return False
    named = set(re.findall(r"[`']([A-Za-z_][A-Za-z0-9_]*)", d.message))
    first = re.match(IDENT, d.message)
    if d.message.endswith("is defined but never used") and first:
        named.add(first.group(0))
    return bool(named & words)


def _elaborate(model: S.Model, source: Source, params: dict) -> tuple[list[Diagnostic], object]:
    """Elaborate and check as `mgdsl check` does: (errors and warnings, the IR or None)."""
    from .check import check
    from .elaborate import elaborate
    try:
        ir = elaborate(model, source, params)
        check(ir, source)
        return list(ir.warnings), ir
    except SpecError as e:
        return list(e.diagnostics), None


def _resolved(model: S.Model, source: Source, params: dict):
    """The spec's grids, spaces and params (mgdsl.resolve) when they resolve though the spec does not compile."""
    from .resolve import Reporter, resolve
    try:
        return resolve(model, Reporter(source), dict(params))
    except SpecError:
        return None


def analyse(text: str, path: str = "<spec>", params: dict | None = None) -> Analysis:
    """Every diagnostic the compiler can find in the text; never raises (an internal error is a diagnostic)."""
    a = Analysis(text, text.split("\n"))  # lines as the parser counts them (only \n ends a line)
    try:
        a.model, a.diagnostics, a.blanked = parse_recovering(text, path)
        if a.model is None:
            return a
        diags, a.ir = _elaborate(a.model, Source(path, text), dict(params or {}))
        if a.ir is None:
            a.resolved = _resolved(a.model, Source(path, text), dict(params or {}))
        if a.diagnostics:
            words = set(re.findall(IDENT, "\n".join(a.lines[n - 1] for n in a.blanked if n <= len(a.lines))))
            diags = [d for d in diags if not _caused_by_blanking(d, words)]
            a.ir = None  # a model with statements left out is not the user's model
        a.diagnostics += diags
    except Exception as e:  # a compiler bug must not take the editor's server down
        a.diagnostics.append(Diagnostic(f"internal error: {type(e).__name__}: {e}", None,
                                        "please report it with this spec (mgdsl check shows the same)"))
    return a


# ---------------------------------------------------------------- names and where they occur

@dataclass(frozen=True)
class Occurrence:
    """One written name: an operator, state, param or primitive, at a definition or a use."""
    kind: str  # op | state | param | prim
    name: str
    span: Span
    is_def: bool = False
    index: tuple | None = None  # as written after an operator's name: A[l+1], A[1]


def _find(lines: list[str], span: Span | None, name: str, start: int = 0) -> Span | None:
    """Where `name` is written, as a whole word, inside `span` (from column `start`, 0-based, on its first line)."""
    if span is None:
        return None
    pat = re.compile(r"(?<![A-Za-z0-9_'])" + re.escape(name) + r"(?![A-Za-z0-9_'])")
    for ln in range(span.line, min(span.end_line, len(lines)) + 1):
        text = lines[ln - 1]
        lo = max(start, span.col - 1) if ln == span.line else 0
        hi = span.end_col - 1 if ln == span.end_line else len(text)
        m = pat.search(text, lo, max(lo, hi))
        if m:
            return Span(ln, m.start() + 1, ln, m.end() + 1)
    return None


@dataclass
class _Walker:
    """Collects the occurrences of an AST, classifying each name by what the spec defines."""
    lines: list[str]
    ops: set[str]
    params: set[str]
    states: set[str]
    out: list[Occurrence] = field(default_factory=list)

    def add(self, kind: str, name: str, span: Span | None, is_def: bool = False, index=None, start: int = 0):
        at = _find(self.lines, span, name, start)
        if at is not None:
            self.out.append(Occurrence(kind, name, at, is_def, index))
        return at

    def num(self, n) -> None:
        if isinstance(n, S.Num) and isinstance(n.value, str) and n.value != "auto":
            self.add("param", n.value, n.span)

    def term(self, t) -> None:
        from .prims import PRIMS
        if isinstance(t, S.OpRef):
            self.add("prim" if t.name in PRIMS and t.name not in self.ops else "op", t.name, t.span, index=t.index)
        elif isinstance(t, S.PrimApp):
            self.add("prim", t.name, t.span)
            for a in t.args:
                self.arg(a)

    def arg(self, a) -> None:
        if isinstance(a, S.Sig):
            src = self.add("state", a.src, a.span)
            if a.dst != "classes":  # linear(u -> classes): the class count, not a state
                self.add("state", a.dst, a.span, start=src.end_col - 1 if src else 0)
        elif isinstance(a, S.RefArg):
            self.add("op", a.name, a.span, index=a.index)
        elif isinstance(a, S.Opt):
            if a.value is None and a.key in self.ops:
                self.add("op", a.key, a.span)
            elif a.value is None and a.key in self.params:
                self.add("param", a.key, a.span)
            elif isinstance(a.value, str) and a.value in self.params:
                self.add("param", a.value, a.span, start=(a.span.col - 1 + len(a.key)) if a.span else 0)

    def expr(self, e) -> None:
        from .prims import PRIMS
        if isinstance(e, S.Var):
            kind = "op" if e.name in self.ops else "param" if e.name in self.params else "state"
            self.add(kind, e.name, e.span, index=e.index)
        elif isinstance(e, S.Apply):
            self.add("prim" if e.name in PRIMS and e.name not in self.ops else "op", e.name, e.span, index=e.index)
            self.expr(e.arg)
        elif isinstance(e, S.BinOp):
            self.expr(e.left)
            self.expr(e.right)
        elif isinstance(e, (S.Scaled, S.Sum)):
            self.expr(e.arg if isinstance(e, S.Scaled) else e.body)

    def item(self, it) -> None:
        if isinstance(it, S.Param):
            self.add("param", it.name, it.span, True, start=(it.span.col - 1 + len("param")) if it.span else 0)
        elif isinstance(it, S.Input):
            self.add("state", it.name, it.span, True, start=(it.span.col - 1 + len("input")) if it.span else 0)
            for n in (it.channels, it.height, it.width):
                self.num(n)
        elif isinstance(it, S.Setting):
            for n in it.values:
                self.num(n)
        elif isinstance(it, S.Spaces):
            for d in it.decls:
                self.add("state", d.name, d.span, True)
                for n in d.channels:
                    self.num(n)
        elif isinstance(it, S.OpDef):
            self.add("op", it.name, it.span, True, index=it.index)
            for t in it.body:
                self.term(t)
        elif isinstance(it, S.Equation):
            for asg in it.assigns:
                self.add("state", asg.name, asg.span, index=asg.index)
                self.expr(asg.expr)
        elif isinstance(it, S.Output):
            self.expr(it.expr)


def occurrences(model: S.Model, lines: list[str]) -> list[Occurrence]:
    """Every operator, state, param and primitive name written in the spec, with its exact range."""
    items = model.items
    w = _Walker(lines, {it.name for it in items if isinstance(it, S.OpDef)},
                {it.name for it in items if isinstance(it, S.Param)},
                {d.name for it in items if isinstance(it, S.Spaces) for d in it.decls}
                | {it.name for it in items if isinstance(it, S.Input)})
    for it in items:
        w.item(it)
    return w.out


def at(occs: list[Occurrence], line: int, col: int) -> Occurrence | None:
    """The occurrence under a 1-based (line, col); the cursor just after a name counts."""
    for o in occs:
        if o.span.line == line and o.span.col <= col <= o.span.end_col:
            return o
    return None


def _specific_def(defs: list[Occurrence], index) -> list[Occurrence]:
    """For a use with a literal index (A[1]), the definition written for exactly it, if there is one."""
    if index and all(ix.var is None for ix in index):
        want = tuple(ix.offset for ix in index)
        exact = [d for d in defs if d.index and all(ix.var is None for ix in d.index)
                 and tuple(ix.offset for ix in d.index) == want]
        if exact:
            return exact
    return defs


def definitions(occs: list[Occurrence], o: Occurrence) -> list[Occurrence]:
    """Where the name under the cursor is defined: `A[l]` in `Ar[l] = A[l]` leads to A's definition."""
    defs = [d for d in occs if d.is_def and d.kind == o.kind and d.name == o.name]
    return _specific_def(defs, o.index) if o.kind == "op" else defs


def references(occs: list[Occurrence], o: Occurrence, include_def: bool = True) -> list[Occurrence]:
    return [r for r in occs if r.kind == o.kind and r.name == o.name and (include_def or not r.is_def)]


# ---------------------------------------------------------------- hover

def _ty(ty) -> str:
    if ty is None:
        return "?"
    where = "pooled" if ty.level is None else "input" if ty.level == 0 else f"grid {ty.level}"
    return f"{ty.space} {' x '.join(map(str, ty.shape))} ({where})"


def _scope_line(defs: list) -> str:
    """What the index of a definition means for weight sharing (the paper's per-grid / per-step operators)."""
    general = next((d for d in defs if d.index and all(ix.var not in (None, "J") for ix in d.index)), None)
    index = general.index if general else (defs[0].index if defs else None)
    if not index:
        return "sharing scope: one instance for the whole model; every use shares its weights"
    names = [ix.var or str(ix.offset) for ix in index]
    per = ", ".join(f"{SCOPE_WORDS.get(v, 'index')} `{v}`" for v in names)
    return f"sharing scope: `[{', '.join(names)}]`, one instance per {per}; uses with the same index share weights"


def hover_op(a: Analysis, name: str, ir=None) -> str:
    """An operator: its definitions, sharing scope, and per instance its class, params, shapes and MACs."""
    from .cost import si
    defs = [it for it in a.model.items if isinstance(it, S.OpDef) and it.name == name] if a.model else []
    out = [f"**operator `{name}`**", "", "```mg", *(a.lines[d.span.line - 1].strip() for d in defs if d.span),
           "```", "", _scope_line(defs)] if defs else \
        [f"**operator `{name}`**", "", "_its definition does not parse now_"]  # no scope read off a dropped line
    ir = ir or a.ir
    insts = [i for i in ir.instances.values() if i.name == name] if ir is not None else []
    if not insts:
        out.append("\n_shapes, parameters and MACs show once the spec compiles and uses it_")
        return "\n".join(out)
    cost = a.macs if ir is a.ir else None
    if cost is None:
        from .cost import macs
        cost = macs(ir)
    out += ["", "| instance | class | params | input | output | MACs | applied | shares |",
            "|---|---|---:|---|---|---:|---:|---|"]
    for i in insts:
        shares = ", ".join(lay.ref for lay in i.layers if lay.kind == "ref") or "-"
        runs = sorted(((lvl, v) for (label, lvl), v in cost.by_grid.items() if label == i.label),
                      key=lambda kv: (kv[0] is None, kv[0] or 0))
        for _, (x, y, uses, n) in runs or [(None, (i.in_ty, i.out_ty, 0, 0))]:
            out.append(f"| {i.label} | {i.klass} | {i.params:,} | {_ty(x)} | {_ty(y)} | {si(n)} | {uses} | "
                       f"{shares} |")
    if any(lay.kind == "ref" for i in insts for lay in i.layers):
        out.append("\nparams and MACs of a shared operator are counted once, at that operator")
    return "\n".join(out)


def hover_state(a: Analysis, name: str, ir=None) -> str:
    """A state (or the input): its channels and size on each grid (from the IR, or the resolved spec: both
    have input_name, input_ty, spaces and sizes)."""
    ir = ir or a.ir or a.resolved
    if ir is None:
        return f"**state `{name}`**\n\n_channels and sizes show once the spec compiles_"
    if name == ir.input_name and name not in ir.spaces:
        return f"**input `{name}`**: {' x '.join(map(str, ir.input_ty.shape))} (channels x height x width)"
    if name not in ir.spaces:
        return f"**`{name}`**: not a state of this model"
    rows = [f"| {lvl} | {c} | {ir.sizes[lvl][0]} x {ir.sizes[lvl][1]} |"
            for lvl, c in enumerate(ir.spaces[name], 1) if lvl in ir.sizes]
    return "\n".join([f"**state `{name}`** (space): channels and size per grid", "",
                      "| grid | channels | size |", "|---:|---:|---|", *rows])


def hover_param(a: Analysis, name: str, ir=None) -> str:
    """A param: the value written, the value this check used, and how `-D` changes it."""
    written = [it for it in a.model.items if isinstance(it, S.Param) and it.name == name] if a.model else []
    ir = ir or a.ir
    out = [f"**param `{name}`**" + (f" = {_value(written[0].value)}" if written else "")]
    if ir is not None and name in ir.params and written and ir.params[name] != written[0].value:
        out.append(f"\nvalue in this check: {_value(ir.params[name])} "
                   "(from `mgdsl lsp -D` or the `mgdsl.defines` setting)")
    out.append(f"\n`-D {name}=VALUE` changes it without editing the spec, e.g. `mgdsl check SPEC -D {name}=...` "
               f"or `mgdsl compile SPEC -D {name}=...`; in the editor, the setting `mgdsl.defines` "
               f"(e.g. `[\"{name}=...\"]`).")
    return "\n".join(out)


def _value(v) -> str:
    return "[" + ", ".join(map(str, v)) + "]" if isinstance(v, tuple) else str(v)


def option_text(o) -> str:
    """One option as a user writes it: `stride 1|2`, `pad zero|periodic|reflect`, `bias`, `groups N`."""
    if o.flag:
        return o.key
    if o.bare:
        return "|".join(map(str, o.values))
    if o.values:
        return f"{o.key} {'|'.join(map(str, o.values))}"
    return f"{o.key} {'N' if o.number is int else 'X'}"


def prim_signature(p) -> str:
    args = ["A[l]"] * p.refs + (["a -> b"] if p.sig else []) + [option_text(o) for o in p.options]
    return f"{p.name}({', '.join(args)})" if args else p.name


def hover_prim(name: str) -> str:
    from .prims import PRIMS
    p = PRIMS[name]
    defaults = [f"{o.key} {o.default}" for o in p.options if o.default not in (None, False)]
    return "\n".join([f"**primitive `{name}`**: {p.doc}", "", "```mg", prim_signature(p), "```"]
                     + ([f"defaults: {', '.join(defaults)}"] if defaults else [])
                     + (["may be applied directly in an equation"] if p.inline else []))


def hover(a: Analysis, o: Occurrence, ir=None) -> str:
    if o.kind == "op":
        return hover_op(a, o.name, ir)
    if o.kind == "state":
        return hover_state(a, o.name, ir)
    if o.kind == "param":
        return hover_param(a, o.name, ir)
    return hover_prim(o.name)


# ---------------------------------------------------------------- completion

def _names(text: str) -> dict[str, str]:
    """The spec's own operators, params and states, read from the text (works while it does not parse)."""
    from .library import grammar_keywords
    kw = set(grammar_keywords())
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(rf"^\s*({IDENT})\s*(\[[^\]]*\])?\s*=", line)
        if m and m.group(1) not in kw:
            out.setdefault(m.group(1), "op")
        m = re.match(rf"^\s*param\s+({IDENT})", line)
        if m:
            out[m.group(1)] = "param"
        m = re.match(rf"^\s*input\s+({IDENT})", line)
        if m:
            out[m.group(1)] = "state"
        m = re.match(r"^\s*space\s+(.*)", line)
        if m:
            for s in re.findall(rf"({IDENT})\s*=", m.group(1)):
                out[s] = "state"
    return out


def _open_prim(before: str) -> str | None:
    """The primitive whose argument list the cursor is in (`conv3(u -> f, pad |`), if any."""
    depth = 0
    for k in range(len(before) - 1, -1, -1):
        ch = before[k]
        if ch == ")":
            depth += 1
        elif ch == "(":
            if depth == 0:
                m = re.search(rf"({IDENT})\s*$", before[:k])
                return m.group(1) if m else None
            depth -= 1
    return None


def completions(text: str, line: int, col: int) -> list[T.CompletionItem]:
    """What may be written at a 0-based (line, col): option values, options, or keywords, primitives, names."""
    from .library import grammar_keywords
    from .prims import PRIMS
    lines = text.split("\n")
    before = lines[line][:col] if line < len(lines) else ""
    names = _names(text)
    prim = _open_prim(before)
    if prim in PRIMS:
        p = PRIMS[prim]
        typed = re.match(rf"^\s*({IDENT})\s+\S*$", re.split(r"[(,]", before)[-1])  # `pad |` or `pad per|`
        key = next((o for o in p.options if typed and typed.group(1) == o.key and o.values), None)
        if key is not None:
            return [T.CompletionItem(str(v), kind=T.CompletionItemKind.EnumMember, detail=f"{prim}: {key.key}")
                    for v in key.values]
        items = [T.CompletionItem(o.key if not o.bare else str(v), kind=T.CompletionItemKind.Property,
                                  detail=option_text(o), documentation=f"{prim} option; default {o.default}")
                 for o in p.options for v in (o.values if o.bare else (None,))]
        return items + [T.CompletionItem(n, kind=NAME_KINDS[k], detail=k) for n, k in sorted(names.items())
                        if (k == "state" and p.sig) or (k == "op" and p.refs) or k == "param"]
    items = [T.CompletionItem(k, kind=T.CompletionItemKind.Keyword) for k in grammar_keywords()]
    items += [T.CompletionItem(p.name, kind=T.CompletionItemKind.Function, detail=prim_signature(p),
                               documentation=p.doc) for p in PRIMS.values()]
    return items + [T.CompletionItem(n, kind=NAME_KINDS[k], detail=k) for n, k in sorted(names.items())]


# ---------------------------------------------------------------- symbols, formatting, code actions

def to_range(span: Span | None, lines: list[str]) -> T.Range:
    """A 1-based, end-exclusive Span as an LSP range; no span: the first line."""
    if span is None:
        return T.Range(T.Position(0, 0), T.Position(0, len(lines[0]) if lines else 0))
    return T.Range(T.Position(span.line - 1, span.col - 1), T.Position(span.end_line - 1, span.end_col - 1))


def to_lsp(d: Diagnostic, lines: list[str]) -> T.Diagnostic:
    """The compiler's diagnostic as the editor shows it: its message, then its hint (did-you-mean included)."""
    sev = T.DiagnosticSeverity.Warning if d.severity == "warning" else T.DiagnosticSeverity.Error
    return T.Diagnostic(to_range(d.span, lines), d.message + (f"\nhint: {d.hint}" if d.hint else ""), sev,
                        source=SOURCE, data={"hint": d.hint} if d.hint else None)


def _item_symbol(it, lines: list[str]) -> T.DocumentSymbol | None:
    r = to_range(it.span, lines)
    if isinstance(it, S.Param):
        sel = _find(lines, it.span, it.name, it.span.col - 1 + len("param"))
        return T.DocumentSymbol(it.name, T.SymbolKind.Constant, r, to_range(sel or it.span, lines),
                                detail=f"param = {_value(it.value)}")
    if isinstance(it, S.OpDef):
        from .fmt import _index
        sel = _find(lines, it.span, it.name)
        return T.DocumentSymbol(it.name + _index(it.index), T.SymbolKind.Function, r, to_range(sel or it.span, lines),
                                detail="operator")
    if isinstance(it, S.Equation):
        names = ", ".join(a.name for a in it.assigns)
        return T.DocumentSymbol(it.kind + (f"[{it.guard}]" if it.guard is not None else ""), T.SymbolKind.Event,
                                r, r, detail=f"equation: {names}")
    if isinstance(it, S.Output):
        return T.DocumentSymbol("output", T.SymbolKind.Event, r, r, detail="equation")
    if isinstance(it, S.Spaces):
        return T.DocumentSymbol("space", T.SymbolKind.Struct, r, r, detail=", ".join(d.name for d in it.decls))
    if isinstance(it, S.Input):
        return T.DocumentSymbol(it.name, T.SymbolKind.Variable, r, r, detail="input")
    return None


def symbols(a: Analysis) -> list[T.DocumentSymbol]:
    """The model, and inside it its params, operators, spaces and equations."""
    m = a.model
    if m is None or m.span is None:
        return []
    kids = [s for s in (_item_symbol(it, a.lines) for it in m.items if it.span) if s is not None]
    sel = _find(a.lines, m.span, m.name, m.span.col - 1 + len("model")) or m.span
    return [T.DocumentSymbol(m.name, T.SymbolKind.Module, to_range(m.span, a.lines), to_range(sel, a.lines),
                             detail="model", children=kids)]


def formatting(text: str) -> list[T.TextEdit]:
    """`mgdsl fmt` of the whole document as one edit; none when it already is canonical or does not parse."""
    from .fmt import fmt
    try:
        out = fmt(S.parse(text))
    except SpecError:
        return []
    if out == text:
        return []
    lines = text.split("\n")
    return [T.TextEdit(T.Range(T.Position(0, 0), T.Position(len(lines) - 1, len(lines[-1]))), out)]


def _misspelt(d: T.Diagnostic, lines: list[str], fix: str) -> T.Range | None:
    """Where the name a did-you-mean corrects is written: a name the message quotes, inside the diagnostic."""
    r = d.range
    for name in re.findall(r"'([^']+)'", d.message.split("\n")[0]):
        if name == fix or not re.fullmatch(IDENT, name):
            continue
        span = _find(lines, Span(r.start.line + 1, r.start.character + 1, r.end.line + 1,
                                 max(r.end.character + 1, 1 if r.end.line > r.start.line else r.start.character + 2)),
                     name)
        if span is not None:
            return to_range(span, lines)
    return None


def code_actions(uri: str, text: str, diags: list[T.Diagnostic]) -> list[T.CodeAction]:
    """One quick fix per did-you-mean: the misspelt name the diagnostic quotes, replaced by the suggestion."""
    lines = text.split("\n")
    out = []
    for d in diags:
        m = DID_YOU_MEAN.search(d.message)
        fixes = re.findall(r"'([^']+)'", m.group(1)) if m else []
        rng = _misspelt(d, lines, fixes[0]) if fixes else None
        if rng is None:
            continue
        old = lines[rng.start.line][rng.start.character:rng.end.character]
        out += [T.CodeAction(f"Change '{old}' to '{fix}'", kind=T.CodeActionKind.QuickFix, diagnostics=[d],
                             is_preferred=len(fixes) == 1, edit=T.WorkspaceEdit(changes={uri: [T.TextEdit(rng, fix)]}))
                for fix in fixes]
    return out


# ---------------------------------------------------------------- the server

def _guarded(fn):
    """A handler that answers None rather than fail: bad input must never take the server down."""
    import functools
    import logging

    @functools.wraps(fn)
    def run(ls, params):
        try:
            return fn(ls, params)
        except Exception:  # logged for the editor's output panel; the next request is answered as usual
            logging.getLogger(__name__).exception("%s failed", fn.__name__)
            return None
    return run


class MgServer:
    """The documents' analyses and the -D values (`mgdsl.defines`), behind a pygls LanguageServer."""

    def __init__(self):
        from pygls.lsp.server import LanguageServer
        from . import __version__
        self.ls = LanguageServer("mgdsl", __version__)
        self.analyses: dict[str, Analysis] = {}
        self.last_ir: dict[str, object] = {}  # the last IR that compiled, for hover while the text is broken
        self.defines: list[str] = []
        self.dirty: set[str] = set()  # documents changed since their check started
        self.running: set[str] = set()  # documents with a check in flight
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mgdsl-check")  # one check at a time

    def params(self) -> tuple[dict, list[Diagnostic]]:
        from . import parse_overrides
        try:
            return parse_overrides(self.defines), []
        except SpecError as e:
            return {}, list(e.diagnostics)

    def _analyse(self, uri: str, text: str, version) -> Analysis:
        doc = self.ls.workspace.get_text_document(uri)
        params, bad = self.params()
        a = analyse(text, doc.path or uri, params)
        a.diagnostics[:0] = bad
        a.version = version
        return a

    def _store(self, uri: str, a: Analysis) -> None:
        self.analyses[uri] = a
        if a.ir is not None:
            self.last_ir[uri] = a.ir

    async def check(self, uri: str) -> None:
        """Analyse one document (only the changed one) off the event loop and publish its diagnostics.

        Changes that arrive while a check runs are coalesced: the next check reads the newest text, so a long
        spec never builds a queue of stale checks, and requests are answered meanwhile."""
        import asyncio
        self.dirty.add(uri)
        if uri in self.running:
            return
        self.running.add(uri)
        try:
            while uri in self.dirty and uri in self.ls.workspace.text_documents:
                self.dirty.discard(uri)
                doc = self.ls.workspace.get_text_document(uri)
                text, version = doc.source, doc.version
                a = await asyncio.get_running_loop().run_in_executor(self.worker, self._analyse, uri, text, version)
                if uri in self.dirty or uri not in self.ls.workspace.text_documents:
                    continue  # newer text (or closed): its own check publishes
                self._store(uri, a)
                self.ls.text_document_publish_diagnostics(T.PublishDiagnosticsParams(
                    uri, [to_lsp(d, a.lines) for d in a.diagnostics], version=version))
        finally:
            self.running.discard(uri)

    def analysis(self, uri: str) -> Analysis:
        """The analysis of the document's current text (computed here if no check of it is under way)."""
        doc = self.ls.workspace.get_text_document(uri)
        a = self.analyses.get(uri)
        if a is None or (a.text != doc.source and uri not in self.running):  # in flight: the last one meanwhile
            a = self._analyse(uri, doc.source, doc.version)
            self._store(uri, a)
        return a

    def occurrence(self, uri: str, pos: T.Position) -> tuple[Analysis, list[Occurrence], Occurrence | None]:
        a = self.analysis(uri)
        occs = occurrences(a.model, a.lines) if a.model is not None else []
        return a, occs, at(occs, pos.line + 1, pos.character + 1)

    def set_defines(self, settings) -> None:
        """`{"defines": ["width=32"]}` (initializationOptions) or `{"mgdsl": {"defines": [...]}}` (settings)."""
        if isinstance(settings, dict) and isinstance(settings.get("mgdsl"), dict):
            settings = settings["mgdsl"]
        if isinstance(settings, dict) and isinstance(settings.get("defines"), list):
            self.defines = [str(d) for d in settings["defines"]]
        elif isinstance(settings, dict) and isinstance(settings.get("defines"), dict):
            self.defines = [f"{k}={v}" for k, v in settings["defines"].items()]
        elif isinstance(settings, dict) and isinstance(settings.get("defines"), str):  # "width=32 nu=2": not ignored
            self.defines = settings["defines"].split()


async def _checked(srv: MgServer, uri: str) -> None:
    """srv.check, with a failure logged rather than raised (the server keeps serving)."""
    import logging
    try:
        await srv.check(uri)
    except Exception:
        logging.getLogger(__name__).exception("checking %s failed", uri)


def _locations(srv: MgServer, params, find) -> list[T.Location] | None:
    """Go-to-definition and find-references alike: the places find(occurrences, the one under the cursor) names,
    or None where the cursor is on no name."""
    uri = params.text_document.uri
    a, occs, o = srv.occurrence(uri, params.position)
    if o is None:
        return None
    return [T.Location(uri, to_range(x.span, a.lines)) for x in find(occs, o)]


def build_server() -> MgServer:
    """The pygls server with every feature registered."""
    srv = MgServer()
    ls = srv.ls
    _register_sync(srv, ls)
    _register_navigation(srv, ls)
    _register_editing(srv, ls)
    return srv


def _register_sync(srv: MgServer, ls) -> None:
    @ls.feature(T.INITIALIZE)
    @_guarded
    def on_initialize(ls, params: T.InitializeParams):
        srv.set_defines(params.initialization_options)

    @ls.feature(T.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(ls, params: T.DidOpenTextDocumentParams):
        await _checked(srv, params.text_document.uri)

    @ls.feature(T.TEXT_DOCUMENT_DID_CHANGE)
    async def did_change(ls, params: T.DidChangeTextDocumentParams):
        await _checked(srv, params.text_document.uri)

    @ls.feature(T.TEXT_DOCUMENT_DID_CLOSE)
    @_guarded
    def did_close(ls, params: T.DidCloseTextDocumentParams):
        uri = params.text_document.uri
        srv.analyses.pop(uri, None)
        srv.last_ir.pop(uri, None)
        ls.text_document_publish_diagnostics(T.PublishDiagnosticsParams(uri, []))

    @ls.feature(T.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls, params: T.DidChangeConfigurationParams):
        srv.set_defines(params.settings)
        srv.analyses.clear()
        for uri in list(ls.workspace.text_documents):
            await _checked(srv, uri)

    @ls.command("mgdsl.serverInfo")
    def server_info(ls, *args):
        """What a test (or a curious user) may ask of the process: it never loads torch."""
        return {"torch_loaded": "torch" in sys.modules, "defines": srv.defines, "documents": len(srv.analyses)}


def _register_navigation(srv: MgServer, ls) -> None:
    @ls.feature(T.TEXT_DOCUMENT_HOVER)
    @_guarded
    def on_hover(ls, params: T.HoverParams):
        uri = params.text_document.uri
        a, _, o = srv.occurrence(uri, params.position)
        if o is None:
            return None
        facts = a.ir or (a.resolved if o.kind == "state" else None) or srv.last_ir.get(uri)
        text = hover(a, o, facts)
        if facts is not None and facts is srv.last_ir.get(uri) and facts is not a.ir and o.kind in ("op", "state"):
            text += "\n\n_(figures from the last version that compiled)_"
        return T.Hover(T.MarkupContent(T.MarkupKind.Markdown, text), to_range(o.span, a.lines))

    @ls.feature(T.TEXT_DOCUMENT_DEFINITION)
    @_guarded
    def on_definition(ls, params: T.DefinitionParams):
        return _locations(srv, params, definitions) or None

    @ls.feature(T.TEXT_DOCUMENT_REFERENCES)
    @_guarded
    def on_references(ls, params: T.ReferenceParams):
        return _locations(srv, params, lambda occs, o: references(occs, o, params.context.include_declaration))

    @ls.feature(T.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @_guarded
    def on_symbols(ls, params: T.DocumentSymbolParams):
        return symbols(srv.analysis(params.text_document.uri))


def _register_editing(srv: MgServer, ls) -> None:
    @ls.feature(T.TEXT_DOCUMENT_COMPLETION, T.CompletionOptions(trigger_characters=["(", ",", " "]))
    @_guarded
    def on_completion(ls, params: T.CompletionParams):
        doc = ls.workspace.get_text_document(params.text_document.uri)
        return T.CompletionList(False, completions(doc.source, params.position.line, params.position.character))

    @ls.feature(T.TEXT_DOCUMENT_FORMATTING)
    @_guarded
    def on_formatting(ls, params: T.DocumentFormattingParams):
        return formatting(ls.workspace.get_text_document(params.text_document.uri).source)

    @ls.feature(T.TEXT_DOCUMENT_CODE_ACTION,
                T.CodeActionOptions(code_action_kinds=[T.CodeActionKind.QuickFix]))
    @_guarded
    def on_code_action(ls, params: T.CodeActionParams):
        doc = ls.workspace.get_text_document(params.text_document.uri)
        return code_actions(params.text_document.uri, doc.source, params.context.diagnostics)


def main(defines: list[str] | None = None) -> int:
    """`mgdsl lsp [-D name=value]`: serve over stdin/stdout until the client says exit."""
    srv = build_server()
    srv.defines = list(defines or [])
    srv.ls.start_io()
    return 0


if __name__ == "__main__":
    sys.exit(main())

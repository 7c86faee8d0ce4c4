"""AST to canonical text, comments kept: parse(fmt(x)) == parse(x)."""
from __future__ import annotations

from dataclasses import dataclass

from . import syntax as S

PREC = {"+": 1, "-": 1}


def _num(v) -> str:
    if isinstance(v, S.Num):
        if v.coef != 1:
            return f"{_num(v.coef)} * {v.value}"
        v = v.value
    if isinstance(v, float):
        return repr(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return str(v)


def _index(index) -> str:
    if index is None:
        return ""
    parts = []
    for ix in index:
        if ix.var is None:
            parts.append(str(ix.offset))
        elif ix.offset:
            parts.append(f"{ix.var}{'+' if ix.offset > 0 else '-'}{abs(ix.offset)}")
        else:
            parts.append(ix.var)
    return "[" + ", ".join(parts) + "]"


def _arg(a) -> str:
    if isinstance(a, S.Sig):
        return f"{a.src} -> {a.dst}"
    if isinstance(a, S.RefArg):
        return a.name + _index(a.index)
    return a.key if a.value is None else f"{a.key} {_num(a.value)}"


def _opterm(t) -> str:
    if isinstance(t, S.OpRef):
        return t.name + _index(t.index)
    return f"{t.name}(" + ", ".join(_arg(a) for a in t.args) + ")"


def expr(e, parent: int = 0) -> str:
    if isinstance(e, S.Var):
        return e.name + _index(e.index)
    if isinstance(e, S.Literal):
        return _num(e.value)
    if isinstance(e, S.Apply):
        return f"{e.name}{_index(e.index)}({expr(e.arg)})"
    if isinstance(e, S.Sum):
        return f"sum({e.var} < {e.bound}: {expr(e.body)})"
    if isinstance(e, S.Scaled):
        text = f"-{expr(e.arg, 3)}" if e.coef == -1.0 else f"{_num(e.coef)} * {expr(e.arg, 3)}"
        return f"({text})" if parent >= 3 else text
    if isinstance(e, S.BinOp):
        text = f"{expr(e.left, 1)} {e.op} {expr(e.right, 2)}"
        return f"({text})" if parent >= 2 else text
    raise TypeError(e)


EQUATION_KW_WIDTH = len("coarsen")  # equation keywords are padded at least this far: `init    f = ...`


def _lhs_and_rest(it) -> tuple[str, str] | None:
    """The part of an operator definition or equation that is aligned within a block, and the rest."""
    if isinstance(it, S.OpDef):
        return f"{it.name}{_index(it.index)}", "= " + " . ".join(_opterm(t) for t in it.body)
    if isinstance(it, S.Equation):
        guard = f"[{it.guard}]" if it.guard is not None else ""
        return f"{it.kind}{guard}", "; ".join(f"{a.name}{_index(a.index)} = {expr(a.expr)}" for a in it.assigns)
    if isinstance(it, S.Output):
        return "output", expr(it.expr)
    return None


def item(it, width: int = 0) -> str:
    """One item on one line; `width` pads an operator's name or an equation's keyword for alignment."""
    split = _lhs_and_rest(it)
    if split is not None:
        return f"{split[0].ljust(width)} {split[1]}"
    if isinstance(it, S.Param):
        v = it.value
        return f"param {it.name} = " + ("[" + ", ".join(map(_num, v)) + "]" if isinstance(v, tuple) else _num(v))
    if isinstance(it, S.Input):
        return f"input {it.name} : {_num(it.channels)} x {_num(it.height)} x {_num(it.width)}"
    if isinstance(it, S.Setting):
        return f"{it.key} " + ", ".join(v if isinstance(v, str) else _num(v) for v in it.values)
    if isinstance(it, S.Spaces):
        return "space " + ", ".join(
            f"{d.name} = " + ("[" + ", ".join(map(_num, d.channels)) + "]" if d.per_level else _num(d.channels[0]))
            for d in it.decls)
    raise TypeError(it)


@dataclass(frozen=True)
class _Entry:
    """A line of the output: an item (with its trailing comments) or a comment on its own line."""
    line: int
    end: int
    what: object  # an AST item, or the comment's text
    trailing: tuple[str, ...] = ()

    @property
    def is_item(self) -> bool:
        return not isinstance(self.what, str)


def _widths(block: list) -> dict[int, int]:
    """Alignment of one block (lines between blank lines): `=` of operator definitions, equation keywords."""
    items = [e.what for e in block if e.is_item]
    ops = [len(_lhs_and_rest(it)[0]) for it in items if isinstance(it, S.OpDef)]
    eqs = [len(_lhs_and_rest(it)[0]) for it in items if isinstance(it, (S.Equation, S.Output))]
    out = {}
    for it in items:
        if isinstance(it, S.OpDef):
            out[id(it)] = max(ops)
        elif isinstance(it, (S.Equation, S.Output)):
            out[id(it)] = max([EQUATION_KW_WIDTH, *eqs])
    return out


def _layout(block: list, indent: str) -> list[str]:
    """Lines of one block; its trailing comments start in one column, two spaces after the longest commented line."""
    widths = _widths(block)
    code = [indent + (item(e.what, widths.get(id(e.what), 0)) if e.is_item else e.what) for e in block]
    column = max([len(c) for c, e in zip(code, block) if e.trailing] or [0]) + 2
    return [c.ljust(column) + "  ".join(e.trailing) if e.trailing else c for c, e in zip(code, block)]


def _blocks(entries: list) -> list[list]:
    """Split where the source has a blank line: a gap in line numbers that no item or comment covers."""
    out: list[list] = []
    last = None
    for e in entries:
        if last is None or e.line > last + 1:
            out.append([])
        out[-1].append(e)
        last = e.end
    return out


def fmt(model: S.Model) -> str:
    """Canonical layout: two-space indent, one item per line, runs of blank lines kept as one, comments kept
    where they were (on their own line, or trailing an item in one aligned column per block)."""
    comments = sorted(model.comments)
    trailing_lines = set()
    body: list[_Entry] = []
    for it in model.items:
        line = it.span.line if it.span else 0
        end = it.span.end_line if it.span else line
        trailing = tuple(t for n, t in comments if line <= n <= end)
        trailing_lines |= {n for n, _ in comments if line <= n <= end}
        body.append(_Entry(line, end, it, trailing))
    start = model.span.line if model.span else 1
    stop = model.span.end_line if model.span else 10 ** 9
    own = [_Entry(n, n, t) for n, t in comments if n not in trailing_lines]
    body = sorted(body + [e for e in own if start < e.line < stop], key=lambda e: e.line)
    lines: list[str] = []
    for k, b in enumerate(_blocks([e for e in own if e.line <= start])):
        lines += ([""] if k else []) + _layout(b, "")
    lines.append(f"model {model.name} {{")
    for k, b in enumerate(_blocks(body)):
        lines += ([""] if k else []) + _layout(b, "  ")
    lines.append("}")
    lines += [e.what for e in own if e.line >= stop]
    return "\n".join(lines) + "\n"

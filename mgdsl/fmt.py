"""AST to canonical text, comments kept: parse(fmt(x)) == parse(x)."""
from __future__ import annotations

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


def item(it) -> str:
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
    if isinstance(it, S.OpDef):
        return f"{it.name}{_index(it.index)} = " + " . ".join(_opterm(t) for t in it.body)
    if isinstance(it, S.Equation):
        guard = f"[{it.guard}]" if it.guard is not None else ""
        return f"{it.kind}{guard} " + "; ".join(f"{a.name}{_index(a.index)} = {expr(a.expr)}" for a in it.assigns)
    if isinstance(it, S.Output):
        return f"output {expr(it.expr)}"
    raise TypeError(it)


def fmt(model: S.Model) -> str:
    """Canonical layout: two-space indent, one item per line, comments before the item they preceded."""
    comments = list(model.comments)
    out: list[str] = []

    def flush(upto: int, indent: str) -> None:
        while comments and comments[0][0] < upto:
            out.append(indent + comments.pop(0)[1])

    start = model.span.line if model.span else 1
    flush(start, "")
    out.append(f"model {model.name} {{")
    for it in model.items:
        line = it.span.line if it.span else 0
        end = it.span.end_line if it.span else 0
        flush(line, "  ")
        trailing = [c for c in comments if line <= c[0] <= end]
        comments[:] = [c for c in comments if not (line <= c[0] <= end)]
        text = "  " + item(it)
        if trailing:
            text += "  " + "  ".join(c[1] for c in trailing)
        out.append(text)
    flush(10 ** 9, "  ")
    out.append("}")
    return "\n".join(out) + "\n"

"""Parse .mg text into an AST of plain dataclasses that remember their source spans."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import lark
from lark import Lark, Token, Transformer, v_args

from .diagnostics import Diagnostic, Source, Span, SpecError, did_you_mean


NOSPAN = field(default=None, compare=False, repr=False)


# ---------------------------------------------------------------- AST nodes

@dataclass(frozen=True)
class Num:
    """A number, or a reference to a `param` times a constant (resolved during elaboration)."""
    value: float | int | str
    span: Span | None = NOSPAN
    coef: float | int = 1


@dataclass(frozen=True)
class Idx:
    """One index: a variable plus offset (`l+1`, `i-2`), or a literal (`var` None)."""
    var: str | None
    offset: int
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class Param:
    name: str
    value: float | int | tuple
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class Input:
    name: str
    channels: Num
    height: Num
    width: Num
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class Setting:
    """`classes`, `grids`, `smooth`, `postsmooth`, `cycle`: one keyword and its values."""
    key: str
    values: tuple
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class SpaceDecl:
    name: str
    channels: tuple[Num, ...]
    per_level: bool
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class Spaces:
    decls: tuple[SpaceDecl, ...]
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class Sig:
    src: str
    dst: str
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class RefArg:
    name: str
    index: tuple[Idx, ...]
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class Opt:
    key: str
    value: float | int | str | None
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class OpRef:
    """A named operator (or argument-free primitive such as `relu`) in a composition."""
    name: str
    index: tuple[Idx, ...] | None
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class PrimApp:
    """A primitive with arguments, e.g. `conv3(u -> f, stride 2)`."""
    name: str
    args: tuple
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class OpDef:
    """NAME[scope] = t1 . t2 . ... (applied right to left); the index sets the sharing scope."""
    name: str
    index: tuple[Idx, ...] | None
    body: tuple
    span: Span | None = NOSPAN


# expressions
@dataclass(frozen=True)
class Var:
    name: str
    index: tuple[Idx, ...] | None
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class Apply:
    name: str
    index: tuple[Idx, ...] | None
    arg: object
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class BinOp:
    op: str  # '+' or '-'
    left: object
    right: object
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class Scaled:
    coef: float
    arg: object
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class Literal:
    value: float
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class Sum:
    """sum(j < i: body): the multi-step and DenseNet sums over earlier iterates."""
    var: str
    bound: str
    body: object
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class Assign:
    name: str
    index: tuple[Idx, ...] | None
    expr: object
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class Equation:
    kind: str  # init | step | coarsen | refine | poststep
    guard: int | None
    assigns: tuple[Assign, ...]
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class Output:
    expr: object
    span: Span | None = NOSPAN


@dataclass(frozen=True)
class Model:
    name: str
    items: tuple
    span: Span | None = NOSPAN
    comments: tuple = field(default=(), compare=False, repr=False)


def retarget(model: Model, shape: tuple[int, int, int] | None = None, classes: int | None = None) -> Model:
    """The same spec for other data: `input` takes `shape` (C, H, W) and `classes` takes `classes`, spans kept."""
    items = []
    for it in model.items:
        if shape is not None and isinstance(it, Input):
            it = replace(it, channels=Num(shape[0], it.channels.span), height=Num(shape[1], it.height.span),
                         width=Num(shape[2], it.width.span))
        if classes is not None and isinstance(it, Setting) and it.key == "classes":
            it = replace(it, values=(Num(classes, it.values[0].span),))
        items.append(it)
    return replace(model, items=tuple(items))


# ---------------------------------------------------------------- parse tree -> AST

def _span(meta) -> Span | None:
    if getattr(meta, "empty", True):
        return None
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(t: Token) -> Span:
    return Span(t.line, t.column, t.end_line, t.end_column)


def _number(text: str) -> float | int:
    return int(text) if text.isdigit() else float(text)


@v_args(meta=True)
class ToAST(Transformer):
    """lark Transformer: one method per grammar rule, each returning a dataclass."""

    def start(self, meta, c):
        return c[0]

    def model(self, meta, c):
        return Model(str(c[1]), tuple(c[3:-1]), _span(meta))

    def num(self, meta, c):
        t = c[0]
        if len(c) == 3:  # 2 * width
            return Num(str(c[2]), Span(t.line, t.column, c[2].end_line, c[2].end_column), coef=_number(t))
        return Num(_number(t) if t.type == "SIGNED_NUMBER" else str(t), _tok_span(t))

    def value(self, meta, c):
        if len(c) == 1 and c[0].type == "NAME":  # a name-valued param, e.g. param kr = bilinear
            return str(c[0])
        nums = [_number(t) for t in c if isinstance(t, Token) and t.type == "SIGNED_NUMBER"]
        return tuple(nums) if len(c) > 1 else nums[0]

    def numlist(self, meta, c):
        return tuple(x for x in c if isinstance(x, Num))

    def param(self, meta, c):
        return Param(str(c[1]), c[3], _span(meta))

    def input(self, meta, c):
        return Input(str(c[1]), c[3], c[5], c[7], _span(meta))

    def classes(self, meta, c):
        return Setting("classes", (c[1],), _span(meta))

    def grids(self, meta, c):
        v = c[1]
        return Setting("grids", ("auto",) if isinstance(v, Token) else (v,), _span(meta))

    def smooth(self, meta, c):
        return Setting("smooth", c[1], _span(meta))

    def postsmooth(self, meta, c):
        return Setting("postsmooth", c[1], _span(meta))

    def cycle(self, meta, c):
        return Setting("cycle", (str(c[1]),), _span(meta))

    def space(self, meta, c):
        return Spaces(tuple(x for x in c if isinstance(x, SpaceDecl)), _span(meta))

    def spacedecl(self, meta, c):
        nums = tuple(x for x in c if isinstance(x, Num))
        per_level = any(isinstance(x, Token) and x.type == "LBRACK" for x in c)
        return SpaceDecl(str(c[0]), nums, per_level, _span(meta))

    def index(self, meta, c):
        return tuple(x for x in c if isinstance(x, Idx))

    def idx(self, meta, c):
        if len(c) == 1:
            t = c[0]
            if t.type == "SIGNED_NUMBER":
                return Idx(None, int(float(t)), _span(meta))
            return Idx(str(t), 0, _span(meta))
        sign = 1 if c[1].type == "PLUS" else -1
        return Idx(str(c[0]), sign * int(float(c[2])), _span(meta))

    def opdef(self, meta, c):
        index = c[1] if isinstance(c[1], tuple) else None
        return OpDef(str(c[0]), index, c[-1], _span(meta))

    def opexpr(self, meta, c):
        terms = []
        for x in c:
            if isinstance(x, Token):
                continue
            terms.extend(x if isinstance(x, tuple) else [x])  # flatten nested (a . b)
        return tuple(terms)

    def opterm(self, meta, c):  # a parenthesised composition
        return c[1]

    def factor(self, meta, c):  # a parenthesised expression
        return c[1]

    def opref(self, meta, c):
        return OpRef(str(c[0]), c[1] if len(c) > 1 else None, _span(meta))

    def prim(self, meta, c):
        args = tuple(x for x in c[2:-1] if x is not None and not isinstance(x, Token))
        return PrimApp(str(c[0]), args, _span(meta))

    def sig(self, meta, c):
        return Sig(str(c[0]), str(c[2]), _span(meta))

    def refarg(self, meta, c):
        return RefArg(str(c[0]), c[1], _span(meta))

    def opt(self, meta, c):
        v = c[1] if len(c) > 1 else None
        if isinstance(v, Token):
            v = _number(v) if v.type == "SIGNED_NUMBER" else str(v)
        return Opt(str(c[0]), v, _span(meta))

    def equation(self, meta, c):
        guard = c[1] if isinstance(c[1], int) else None
        return Equation(str(c[0]), guard, tuple(x for x in c if isinstance(x, Assign)), _span(meta))

    def guard(self, meta, c):
        return int(float(c[1]))

    def assign(self, meta, c):
        index = c[1] if isinstance(c[1], tuple) else None
        return Assign(str(c[0]), index, c[-1], _span(meta))

    def output(self, meta, c):
        return Output(c[1], _span(meta))

    def add(self, meta, c):
        return BinOp("+", c[0], c[2], _span(meta))

    def sub(self, meta, c):
        return BinOp("-", c[0], c[2], _span(meta))

    def scaled(self, meta, c):
        return Scaled(float(c[0]), c[2], _span(meta))

    def neg(self, meta, c):
        return Scaled(-1.0, c[1], _span(meta))

    def apply(self, meta, c):
        index = c[1] if isinstance(c[1], tuple) else None
        return Apply(str(c[0]), index, c[-2], _span(meta))

    def var(self, meta, c):
        return Var(str(c[0]), c[1] if len(c) > 1 else None, _span(meta))

    def literal(self, meta, c):
        return Literal(float(c[0]), _span(meta))

    def sum(self, meta, c):
        return Sum(str(c[2]), str(c[4]), c[6], _span(meta))


# ---------------------------------------------------------------- errors in words

WORDS = {
    "NAME": "a name", "SIGNED_NUMBER": "a number", "EQKIND": "an equation (init, step, coarsen, refine, poststep)",
    "TIMES": "'x'", "ARROW": "'->'", "LBRACE": "'{'", "RBRACE": "'}'", "LBRACK": "'['", "RBRACK": "']'",
    "LPAR": "'('", "RPAR": "')'", "EQUALS": "'='", "COLON": "':'", "SEMI": "';'", "COMMA": "','",
    "DOT": "'.'", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "LESS": "'<'", "$END": "end of file",
}


def _word(terminal: str) -> str:
    return WORDS.get(terminal, f"'{terminal.lower()}'")


def _expected(names) -> str:
    words = sorted({_word(n) for n in names})
    if len(words) > 6:
        words = words[:6] + ["..."]
    return ", ".join(words)


def _keywords(terminals) -> list[str]:
    """The words of the grammar's keyword terminals among `terminals` (a string terminal, or an alternation of
    strings such as EQKIND's), read from the grammar, so a new keyword needs no second list."""
    by_name = {t.name: t.pattern for t in _parser().terminals}
    words = []
    for name in terminals:
        pat = by_name.get(name)
        if pat is None:
            continue
        alt = re.fullmatch(r"\(\?:([\w|]+)\)", pat.value) if pat.type == "re" else None
        alts = [pat.value] if pat.type == "str" else alt.group(1).split("|") if alt else []
        words += [w for w in alts if w.isidentifier() and len(w) > 1]
    return words


def _misspelt_keyword(text: str, tok: Token, expected) -> Diagnostic | None:
    """`unknown keyword` with a did-you-mean: the unexpected word itself (`modle m {`), or the word that opens its
    line, which the parser took for an operator name (`smoth 1`: '=' expected after a name)."""
    if tok.type == "NAME":
        hint = did_you_mean(str(tok), _keywords(expected))
        if hint:
            return Diagnostic(f"unknown keyword '{tok}'", _tok_span(tok), hint)
    lines = text.split("\n")
    m = re.fullmatch(r"(\s*)([A-Za-z_][\w']*)\s*", lines[tok.line - 1][:tok.column - 1])
    if not m:
        return None
    start = sum(len(x) + 1 for x in lines[:tok.line - 1]) + len(m.group(1))
    try:
        ip = _parser().parse_interactive(text[:start])
        ip.exhaust_lexer()
        accepts = ip.accepts()
    except lark.exceptions.LarkError:
        return None
    word, col = m.group(2), len(m.group(1)) + 1
    hint = did_you_mean(word, _keywords(accepts))
    return Diagnostic(f"unknown keyword '{word}'", Span(tok.line, col, tok.line, col + len(word)), hint) if hint \
        else None


def _syntax_diag(e: lark.exceptions.UnexpectedInput, text: str = "") -> Diagnostic:
    line, col = max(e.line, 1), max(e.column, 1)
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        ch = e.char
        return Diagnostic(f"unexpected character {ch!r}", Span(line, col, line, col + 1),
                          f"expected {_expected(e.allowed)}" if e.allowed else None)
    if isinstance(e, lark.exceptions.UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            return Diagnostic("unexpected end of file", Span(line, col, line, col + 1),
                              f"expected {_expected(e.expected)}")
        what = f"{_word(tok.type)[2:]} '{tok}'" if tok.type in ("NAME", "SIGNED_NUMBER") else _word(tok.type)
        return (_misspelt_keyword(text, tok, e.expected) if text else None) or \
            Diagnostic(f"unexpected {what}", _tok_span(tok), f"expected {_expected(e.expected)}")
    return Diagnostic("unexpected end of file", None, f"expected {_expected(getattr(e, 'expected', []))}")


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    from .library import grammar_text  # the packaged grammar (wheel) or grammars/mg.lark (source tree)
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=False, cache=True)


def parse(text: str, path: str = "<spec>") -> Model:
    """Text to AST; every syntax error in the file is reported, not only the first."""
    source = Source(path, text)
    if "\x00" in text:
        raise SpecError([Diagnostic("this is not a text file (it contains NUL bytes)", None,
                                    "pass a .mg spec")], source)
    if not text.strip():
        raise SpecError([Diagnostic("the spec is empty", None, "a spec starts with `model NAME {`")], source)
    errors: list[Diagnostic] = []
    lines = text.split("\n")
    tree = None
    while tree is None:
        try:
            tree = _parser().parse("\n".join(lines))
        except lark.exceptions.UnexpectedInput as e:
            d = _syntax_diag(e, "\n".join(lines))
            if errors and (d.message == "unexpected end of file" or len(errors) >= 20):
                break  # a cascade of the blanked lines, not a new error
            errors.append(d)
            if "MODEL" in getattr(e, "expected", ()):
                break  # the `model NAME {` header itself is wrong: every later line would be reported against it
            line = d.span.line if d.span else len(lines)
            if line > len(lines) or not lines[line - 1].strip() or lines[line - 1].strip() in ("}", "{"):
                break
            lines[line - 1] = " " * len(lines[line - 1])  # resynchronise: drop the line, look for more errors
        except lark.exceptions.LarkError as e:
            errors.append(Diagnostic(f"could not parse: {e}".splitlines()[0]))
            break
    if errors:
        raise SpecError(errors, source)
    model = ToAST().transform(tree)
    return Model(model.name, model.items, model.span, comments=_comments(text))


def _comments(text: str) -> tuple:
    """(line, text) of every comment, so that `fmt` keeps them."""
    # the language has no string literals, so every '#' starts a comment
    return tuple((n, line[line.index("#"):].rstrip()) for n, line in enumerate(text.splitlines(), 1) if "#" in line)


def read_source(path: str) -> str:
    """Read a spec file; missing files, folders and binary data become located errors."""
    p = Path(path)
    src = Source(path, "")
    if not p.exists():
        raise SpecError([Diagnostic(f"no such file: {path}", None, "check the path")], src)
    if p.is_dir():
        raise SpecError([Diagnostic(f"{path} is a directory, not a spec", None, "pass a .mg file")], src)
    data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError([Diagnostic("this is not a UTF-8 text file", None, "pass a .mg spec")], src) from None


def parse_file(path: str) -> Model:
    return parse(read_source(path), path)

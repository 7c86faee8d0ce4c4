import pytest
from hypothesis import given, settings, strategies as st

from helpers import SPECS
from mgdsl import SpecError
from mgdsl.fmt import fmt
from mgdsl.syntax import parse, parse_file


@pytest.mark.parametrize("path", SPECS)
def test_fmt_round_trips_every_spec(path):
    m = parse_file(path)
    text = fmt(m)
    assert parse(text) == m
    assert fmt(parse(text)) == text  # canonical is a fixed point
    # comments survive formatting
    assert [c[1] for c in parse(text).comments] == [c[1] for c in m.comments]


def _err(text):
    with pytest.raises(SpecError) as e:
        parse(text, "t.mg")
    return e.value.diagnostics, str(e.value)


def test_syntax_error_is_located_and_in_words():
    diags, msg = _err("model m {\n  A[l] = conv3(u -> f\n}\n")
    assert msg.startswith("t.mg:3:1: error: unexpected '}'")
    assert "expected" in msg and "__ANON" not in msg and "^" in msg


def test_several_syntax_errors_are_all_reported():
    diags, msg = _err("model m {\n  B = = 3\n  C = relu\n  step u = u + + u\n}\n")
    assert [d.span.line for d in diags] == [2, 4]


@pytest.mark.parametrize("text,words", [("", "empty"), ("\x00\x01binary", "not a text file"),
                                        ("model", "end of file")])
def test_garbage_gives_a_message_not_a_traceback(text, words):
    assert words in _err(text)[1]


# ---- hypothesis: generated specs print and re-parse to the same AST
names = st.sampled_from(["u", "f", "g", "v"])
ops = st.sampled_from(["A", "B", "Pi", "R", "xi", "eta"])
idx = st.sampled_from(["", "[l]", "[l, i]", "[l+1]", "[1]"])


@st.composite
def exprs(draw, depth=0):
    if depth > 2 or draw(st.booleans()):
        return draw(names) + draw(st.sampled_from(["", "[i-1]", "[l+1]", "[l+1, 0]"]))
    kind = draw(st.sampled_from(["app", "add", "sub", "scale", "neg", "relu"]))
    a = draw(exprs(depth + 1))
    if kind == "app":
        return f"{draw(ops)}{draw(idx)}({a})"
    if kind == "relu":
        return f"relu({a})"
    if kind == "scale":
        return f"{draw(st.sampled_from(['0.5', '2', '1e-3']))} * ({a})"
    if kind == "neg":
        return f"-({a})"
    b = draw(exprs(depth + 1))
    return f"({a}) {'+' if kind == 'add' else '-'} ({b})"


@st.composite
def specs(draw):
    lines = ["model gen {", f"  param width = {draw(st.integers(1, 512))}", "  input x : 3 x 32 x 32",
             f"  grids {draw(st.integers(1, 5))}", "  param kr = bilinear",
             f"  space u = width, f = [1, {draw(st.sampled_from(['2', '2 * width', 'width']))}]"]
    for _ in range(draw(st.integers(0, 4))):
        body = draw(st.sampled_from(["conv3(u -> f)", "relu . bn . conv3(f -> u, stride 2)", "A[l-1] . relu",
                                     "jacobi(A[l], f -> u, omega 0.8)", "(relu . bn) . conv1(u -> u, depthwise)",
                                     "restrict(f -> f, kr)", "split . sub_id(chi[l, i])"]))
        lines.append(f"  {draw(ops)}{draw(idx)} = {body}  # c")
    for kind in draw(st.lists(st.sampled_from(["init", "step", "coarsen", "refine", "step[1]"]), max_size=4)):
        lines.append(f"  {kind} {draw(names)} = {draw(exprs())}; {draw(names)} = 0")
    lines.append(f"  output {draw(exprs())}")
    lines.append("}")
    return "\n".join(lines)


@settings(max_examples=150, deadline=None)
@given(specs())
def test_fmt_round_trips_generated_specs(text):
    m = parse(text)
    assert parse(fmt(m)) == m


@pytest.mark.parametrize("good,bad,line,col", [
    ("  smooth 1", "  smoth 1", 6, 3),            # the word before the error is taken for an operator name
    ("  smooth 1", "  smoth nu", 6, 3),
    ("  grids 2", "  grid 2", 5, 3),
    ("  step    u", "  stpe    u", 17, 3),        # an equation keyword (EQKIND, an alternation in the grammar)
    ("model tiny", "modle tiny", 1, 1),          # the unexpected word itself
])
def test_a_misspelt_keyword_gets_a_did_you_mean_at_the_word(good, bad, line, col):
    from tiny_specs import TINY_MGNET
    diags, msg = _err(TINY_MGNET.replace(good, bad, 1))
    word = bad.split()[0]
    assert len(diags) == 1
    assert (diags[0].message, diags[0].span.line, diags[0].span.col) == (f"unknown keyword '{word}'", line, col)
    right = good.split()[0]
    assert diags[0].hint == f"did you mean '{right}'?"


def test_keywords_come_from_the_grammar():
    """Every keyword terminal of grammars/mg.lark is offered, the equation kinds included."""
    from mgdsl.syntax import _keywords, _parser
    words = set(_keywords([t.name for t in _parser().terminals]))
    assert {"model", "param", "smooth", "postsmooth", "space", "init", "step", "coarsen", "refine", "poststep",
            "output", "auto", "sum"} <= words
    assert not {"x", "->", "{"} & words


def test_a_wrong_word_that_is_no_keyword_keeps_the_expected_list():
    diags, msg = _err("model m {\n  A[l] conv3(u -> f)\n}\n")
    assert diags[0].message == "unexpected name 'conv3'" and diags[0].hint == "expected '='"

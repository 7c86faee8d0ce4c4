"""The pygments lexer: every shipped spec lexes without an error token, and it is the `mg` entry point."""
from importlib import import_module, metadata

import pytest

pytest.importorskip("pygments")
from pygments.token import Error, Keyword, Name  # noqa: E402

from helpers import ROOT  # noqa: E402
from mgdsl.lexer import MgLexer  # noqa: E402

SHIPPED = sorted(p for folder in ("specs", "mgdsl/families") for p in (ROOT / folder).rglob("*.mg"))


def _tokens(text):
    return list(MgLexer().get_tokens(text))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_spec_lexes_without_error_tokens(path):
    text = path.read_text()
    toks = _tokens(text)
    assert [t for t in toks if t[0] is Error] == []
    assert "".join(v for _, v in toks) == text + ("" if text.endswith("\n") else "\n")


def test_lexer_marks_errors_keywords_and_primitives():
    toks = _tokens("model m {\n  A[l] = conv3(u -> f) @\n  step u = u + B(f - A(u))\n}\n")
    assert (Error, "@") in toks  # the test above can fail: a stray character is an error token
    assert (Keyword, "step") in toks and (Name.Builtin, "conv3") in toks and (Name.Class, "m") in toks
    assert (Name, "stepper") in _tokens("stepper = conv3(u -> f)\n")  # a keyword prefix is a plain name


def test_pyproject_registers_the_lexer_as_a_pygments_entry_point():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    eps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pygments.lexers"]
    module, _, attr = eps["mg"].partition(":")
    assert getattr(import_module(module), attr) is MgLexer


def test_pygmentize_finds_the_lexer_by_name_when_installed():
    if not any(ep.name == "mg" for ep in metadata.entry_points(group="pygments.lexers")):
        pytest.skip("mgdsl is not installed with its entry points here (pip install -e .)")
    from pygments.lexers import get_lexer_by_name
    assert type(get_lexer_by_name("mg")).__name__ == "MgLexer"


def test_the_committed_textmate_grammar_is_the_one_generated_from_the_lexers_lists():
    import importlib.util
    import json
    import re
    spec = importlib.util.spec_from_file_location("gen_textmate", ROOT / "tools/gen_textmate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.OUT.read_text() == gen.text(), "run python tools/gen_textmate.py"
    rules = {p.get("name"): re.compile(p["match"]) for p in json.loads(gen.OUT.read_text())["patterns"]}
    from mgdsl.lexer import _keywords, _primitives
    assert all(rules["keyword.control.mg"].fullmatch(k) for k in _keywords() if k != "model")
    assert all(rules["support.function.builtin.mg"].fullmatch(p) for p in _primitives())
    assert not rules["keyword.control.mg"].search("stepper") and not rules["support.function.builtin.mg"].search("bn'")
    package = json.loads((ROOT / "editors/vscode/package.json").read_text())
    (grammar,) = package["contributes"]["grammars"]
    assert (ROOT / "editors/vscode" / grammar["path"]).resolve() == gen.OUT
    assert package["contributes"]["configuration"]["properties"]["mgdsl.server.command"]["default"] == ["mgdsl", "lsp"]

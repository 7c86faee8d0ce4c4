"""A pygments lexer for .mg specs (`pygmentize -l mg`, Sphinx/MkDocs), registered as a `pygments.lexers` entry point.

The keywords are read from the grammar and the primitives from mgdsl/prims.py's table, so the highlighting
cannot drift from the language."""
from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, Whitespace


def _keywords() -> list[str]:
    """The word terminals of grammars/mg.lark (`MODEL: "model"`, `EQKIND.2: "init" | "step" | ...`)."""
    from .library import grammar_keywords
    return grammar_keywords()


def _primitives() -> list[str]:
    from .prims import PRIMS
    return sorted(PRIMS)


class MgLexer(RegexLexer):
    """Lexer for the mg language of mgdsl (MgNet-style network specs)."""

    name = "mg"
    aliases = ["mg", "mgdsl"]
    filenames = ["*.mg"]
    mimetypes = ["text/x-mgdsl"]

    tokens = {
        "root": [
            (r"[ \t\r\n]+", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (r"(model)([ \t]+)([A-Za-z_][A-Za-z0-9_']*)", bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (words(_keywords(), suffix=r"\b"), Keyword),
            (words(_primitives(), suffix=r"\b(?!')"), Name.Builtin),  # also bare, in compositions: relu . bn
            (r"\d+(\.\d+)?([eE][+-]?\d+)?", Number),
            (r"->|[.=+\-*<:]", Operator),
            (r"[{}\[\](),;]", Punctuation),
            (r"[A-Za-z_][A-Za-z0-9_']*", Name),
        ],
    }

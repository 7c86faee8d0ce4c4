"""mgdsl fmt: the canonical form reads like the shipped specs, and every shipped spec is in it."""
import re

import pytest

from conftest import ROOT
from mgdsl import compile_spec
from mgdsl.fmt import fmt
from mgdsl.syntax import parse

SHIPPED = sorted(p for folder in ("specs", "mgdsl/families") for p in (ROOT / folder).rglob("*.mg"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_spec_is_canonical(path):
    text = path.read_text()
    assert fmt(parse(text, str(path))) == text


def test_blank_lines_are_kept_single_and_dropped_at_the_braces():
    text = ("model m {\n\n  input x : 1 x 4 x 4\n  grids 1\n\n\n\n  space f = 2\n  stem = conv3(x -> f)\n"
            "  init f = stem(x)\n  output f\n\n}\n")
    assert fmt(parse(text)) == ("model m {\n  input x : 1 x 4 x 4\n  grids 1\n\n  space f = 2\n"
                                "  stem = conv3(x -> f)\n  init    f = stem(x)\n  output  f\n}\n")


def test_trailing_comments_align_per_block_and_definitions_align_their_equals():
    """Per block (lines between blank lines): comments two spaces after the longest commented line."""
    text = ("# head\nmodel m {\n  input x : 1 x 4 x 4 # the image\n  grids 1\n  space f = 2     # f\n\n"
            "  stem = conv3(x -> f) # one\n  B[l, i] = relu . bn . conv3(f -> f)\n"
            "  # a comment line\n  init f = stem(x)\n  output f # out\n}\n")
    out = fmt(parse(text))
    assert out == ("# head\nmodel m {\n"
                   "  input x : 1 x 4 x 4  # the image\n"
                   "  grids 1\n"
                   "  space f = 2          # f\n"
                   "\n"
                   "  stem    = conv3(x -> f)  # one\n"
                   "  B[l, i] = relu . bn . conv3(f -> f)\n"
                   "  # a comment line\n"
                   "  init    f = stem(x)\n"
                   "  output  f                # out\n"
                   "}\n")
    assert fmt(parse(out)) == out and parse(out) == parse(text)


def test_the_minimal_spec_of_the_language_reference_compiles_and_is_canonical(tmp_path):
    doc = (ROOT / "docs" / "language.md").read_text()
    section = doc.split("## A complete minimal spec\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"\n\n((?:    .*\n|\n)+)", section).group(1).strip("\n")  # the first indented block
    text = "\n".join(line[4:] for line in block.split("\n")) + "\n"
    assert text.splitlines()[1].startswith("model tiny {")
    assert fmt(parse(text)) == text
    spec = tmp_path / "tiny.mg"
    spec.write_text(text)
    ir = compile_spec(str(spec))
    assert ir.grids == 2 and ir.output_ty.shape == (10,) and ir.total_params == 3810

"""mgdsl fmt: the canonical form reads like the shipped specs, and every shipped spec is in it."""
import re

import pytest

from helpers import ROOT
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


LIST_AND_NOTES = """# before the model
model tiny {
  param width = 4
  param nu = [2, 1]
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth nu
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f)
  B[l, i] = relu . bn . conv3(f -> u)
  Pi[l]   = conv3(u -> u, stride 2)
  R[l]    = conv3(f -> f, stride 2)
  fc      = linear(u -> classes)

  init    f = f_in(x); u = 0
  step    u = u - B(A(u) - f)
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
# after the model: trained 3 epochs, 71% top-1
"""


def test_fmt_in_place_keeps_a_list_param_nested_terms_and_every_comment(tmp_path):
    """`mgdsl fmt -i` on a canonical spec that no shipped spec resembles (a per-grid list, a nested
    difference, comments around the model) changes nothing: the same network, the same notes."""
    from mgdsl.cli import main
    p = tmp_path / "tiny.mg"
    p.write_text(LIST_AND_NOTES.replace("init    f", "init f"))  # one non-canonical line to rewrite
    before = compile_spec(str(p))
    assert main(["fmt", "-i", str(p)]) == 0
    assert p.read_text() == LIST_AND_NOTES
    after = compile_spec(str(p))
    assert (after.nu, after.total_params) == (before.nu, before.total_params) == ([2, 1], 1198)

"""Bad sizes and data that do not fit a spec: exit 2 with file:line:col at the offending text, the source
line and a caret (never a bare message)."""
import re

import numpy as np
import pytest

from mgdsl.cli import main

SPEC = """model sizes {
  param c = 3
  input x : c x 16 x 16
  classes 10
  grids 2
  smooth 1
  space u = 4, f = 4
  f_in = relu . bn . conv3(x -> f)
  A[l] = conv3(u -> f)
  B[l] = relu . bn . conv3(f -> u)
  Pi[l] = conv3(u -> u, stride 2)
  R[l] = conv3(f -> f, stride 2)
  fc = linear(u -> classes)
  init f = f_in(x); u = 0
  step u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output fc(avgpool(u))
}
"""
INPUT_LINE = 3


def _caret_col(err: str, src: str) -> int:
    """The 1-based column of `src` that the caret under its echoed line points at."""
    lines = err.splitlines()
    k = next(i for i, l in enumerate(lines) if l.endswith(src) and i + 1 < len(lines) and "^" in lines[i + 1])
    return lines[k + 1].index("^") - (len(lines[k]) - len(src)) + 1


def _check(tmp_path, capsys, text, *argv):
    p = tmp_path / "s.mg"
    p.write_text(text)
    rc = main(["check", str(p), *argv])
    return rc, capsys.readouterr().err, str(p)


def test_the_base_spec_is_fine(tmp_path, capsys):
    assert _check(tmp_path, capsys, SPEC)[0] == 0


@pytest.mark.parametrize("field,size", [(0, "0"), (1, "0"), (2, "0")])
def test_zero_input_size_is_located_at_the_zero(tmp_path, capsys, field, size):
    sizes = ["c", "16", "16"]
    sizes[field] = size
    line = f"  input x : {' x '.join(sizes)}"
    rc, err, path = _check(tmp_path, capsys, SPEC.replace("  input x : c x 16 x 16", line))
    col = line.index(" x ".join(sizes)) + 1 + sum(len(s) + 3 for s in sizes[:field])
    assert rc == 2 and "Traceback" not in err
    assert f"{path}:{INPUT_LINE}:{col}: error: input size must be positive, got 0" in err
    assert _caret_col(err, line) == col  # the source line, then the caret under the zero


def test_negative_input_size_reaches_the_size_check(tmp_path, capsys):
    """A negative size can only come from -D (the grammar has no negative literals); the size check, not the
    parser, rejects it, at the param's use in `input`."""
    rc, err, path = _check(tmp_path, capsys, SPEC, "-D", "c=-2")
    col = "  input x : c".index("c", 5) + 1
    assert rc == 2 and "Traceback" not in err
    assert f"{path}:{INPUT_LINE}:{col}: error: input size must be positive, got -2" in err
    assert _caret_col(err, "  input x : c x 16 x 16") == col


def test_negative_literal_size_is_a_located_syntax_error(tmp_path, capsys):
    """`input x : -2 x 32 x 32` is rejected by the parser (no negative literals), at the '-'."""
    rc, err, path = _check(tmp_path, capsys, SPEC.replace("input x : c x", "input x : -2 x"))
    assert rc == 2 and "Traceback" not in err
    assert f"{path}:{INPUT_LINE}:13: error: unexpected '-'" in err


def test_data_with_the_wrong_channel_count_is_located_in_the_spec(tmp_path, capsys):
    """A 3-channel spec whose input is the space f (3 channels) cannot take 1-channel images."""
    spec = tmp_path / "rgb.mg"
    spec.write_text("""model rgb {
  input f : 3 x 8 x 8
  classes 3
  grids 2
  smooth 1
  space f = 3, u = 4
  A[l] = conv3(u -> f)
  B[l] = relu . conv3(f -> u)
  fc = linear(u -> classes)
  init u = 0
  step u = u + B(f - A(u))
  coarsen u[l+1] = 0; f[l+1] = avgpool2(f - A(u))
  output fc(avgpool(u))
}
""")
    rng = np.random.default_rng(0)
    for name in ("train", "test"):
        np.savez(tmp_path / f"{name}.npz", x=rng.integers(0, 255, (8, 8, 8, 1)).astype(np.uint8),
                 y=np.arange(8) % 3)
    rc = main(["compile", str(spec), "--train", str(tmp_path / "train.npz"), "--test", str(tmp_path / "test.npz"),
               "--epochs", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "cannot take this data (1 x 8 x 8, 3 classes)" in err
    m = re.search(re.escape(str(spec)) + r":(\d+):(\d+): error: input f has 1 channels but space f has 3", err)
    assert m, err
    # at the `input` line (whose 3 the data replaced) or at the `space f = 3` it contradicts
    line = int(m.group(1))
    assert line in (2, 6)
    src = ["  input f : 3 x 8 x 8", "  space f = 3, u = 4"][line == 6]
    assert _caret_col(err, src) == int(m.group(2))
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.parametrize("output,shape", [("avgpool(u)", "4"), ("u", "4 x 8 x 8")])
def test_an_output_that_is_not_classes_scores_is_located_at_the_output(tmp_path, capsys, output, shape):
    # `classes 10` promises 10 scores; check used to accept avgpool(u) and training then failed without a place
    text = SPEC.replace("  output fc(avgpool(u))", f"  output {output}")
    rc, err, path = _check(tmp_path, capsys, text)
    assert rc == 2 and "Traceback" not in err
    line = text.splitlines().index(f"  output {output}") + 1
    assert f"{path}:{line}:3: error: the output is {shape}, but `classes 10` says the model ends in 10 class scores" in err
    assert "hint:" in err and "fc(avgpool(u))" in err


def test_an_output_that_does_not_depend_on_the_input_is_located_at_the_output(tmp_path, capsys):
    # smooth 0 with u = 0 at the start: u stays 0 on every grid, the classifier sees no image at all
    text = SPEC.replace("  smooth 1", "  smooth 0")
    rc, err, path = _check(tmp_path, capsys, text)
    assert rc == 2 and "Traceback" not in err
    line = text.splitlines().index("  output fc(avgpool(u))") + 1
    assert f"{path}:{line}:3: error: the output does not depend on the input x" in err
    assert "smooth at least once" in err


def test_an_undefined_operator_is_not_followed_by_a_cut_input_error(tmp_path, capsys):
    # the failed term cuts the graph; that is the undefined operator's doing, not a second error to report
    text = SPEC.replace("  step u = u + B(f - A(u))", "  step u = u + Bb(f - A(u))")
    rc, err, _ = _check(tmp_path, capsys, text)
    assert rc == 2 and "undefined operator 'Bb'" in err and "does not depend on the input" not in err

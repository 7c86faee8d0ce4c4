"""`mgdsl fmt --check` fails (exit 1, naming the file) on any text that is not canonical, and never writes."""
import pytest

from mgdsl.cli import main


@pytest.fixture
def canonical(tmp_path, capsys):
    assert main(["fmt", "specs/mgnet.mg"]) == 0
    text = capsys.readouterr().out
    return text


def test_canonical_text_passes_the_check(canonical, tmp_path, capsys):
    p = tmp_path / "c.mg"
    p.write_text(canonical)
    assert main(["fmt", "--check", str(p)]) == 0
    assert capsys.readouterr().err == ""


PERTURB = {
    "misaligned columns": lambda t: t.replace(" = conv3(u -> f)", "  = conv3(u -> f)", 1),
    "space before a comma": lambda t: t.replace("u = width, f", "u = width , f", 1),
    "trailing blank line": lambda t: t + "\n",
    "tab indent": lambda t: t.replace("\n  grids", "\n\tgrids", 1),
    "no final newline": lambda t: t.rstrip("\n"),
}


@pytest.mark.parametrize("how", sorted(PERTURB))
def test_non_canonical_text_fails_the_check_and_is_left_alone(canonical, tmp_path, capsys, how):
    text = PERTURB[how](canonical)
    assert text != canonical
    p = tmp_path / "n.mg"
    p.write_text(text)
    assert main(["fmt", "--check", str(p)]) == 1
    err = capsys.readouterr().err
    assert str(p) in err and "not canonical" in err
    assert p.read_text() == text
    assert main(["fmt", "-i", str(p)]) == 0
    assert p.read_text() == canonical
    assert main(["fmt", "--check", str(p)]) == 0

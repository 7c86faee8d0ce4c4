import json
import subprocess
import sys

import pytest

from mgdsl.cli import main


def run(*argv):
    return subprocess.run([sys.executable, "-m", "mgdsl.cli", *argv], capture_output=True, text=True)


def test_compile_json_has_the_documented_keys(capsys):
    assert main(["compile", "specs/mgnet.mg", "--json", "-D", "width=32"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert {"name", "params", "input_shape", "output_shape", "operators"} <= set(s)
    assert s["input_shape"] == [3, 32, 32] and s["output_shape"] == [10]
    op = next(o for o in s["operators"] if o["name"] == "A[2]")
    assert {"name", "kind", "in", "out", "stride", "params", "uses"} <= set(op)
    assert op["in"] == 32 and op["params"] == 32 * 32 * 9 and op["uses"] >= 3


def test_compile_table_and_check(capsys):
    assert main(["compile", "specs/table2/resnet18.mg"]) == 0
    assert "11,173,962" in capsys.readouterr().out
    assert main(["check", "specs/mgnet.mg"]) == 0
    out = capsys.readouterr().out
    assert "linear" in out and "nonlinear" in out and "A[1]" in out


@pytest.mark.parametrize("args,code,words", [
    (["compile", "no/such.mg"], 2, "no such file"),
    (["compile", "specs"], 2, "is a directory"),
    (["compile", "specs/mgnet.mg", "-D", "width=abc"], 2, "must be a number, but param width is 'abc'"),
    (["compile", "specs/mgnet.mg", "-D", "width"], 2, "expected name=number"),
    (["compile", "specs/mgnet.mg", "-D", "widht=3"], 2, "did you mean 'width'"),
])
def test_bad_input_exit_2_without_traceback(args, code, words, capsys):
    assert main(args) == code
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_binary_and_empty_files(tmp_path):
    b = tmp_path / "b.mg"
    b.write_bytes(bytes(range(256)))
    e = tmp_path / "e.mg"
    e.write_text("")
    for p in (b, e):
        r = run("check", str(p))
        assert r.returncode == 2 and "Traceback" not in r.stderr and str(p) in r.stderr


def test_fmt_prints_canonical_text(capsys):
    assert main(["fmt", "specs/mgnet.mg"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# MgNet") and "model mgnet {" in out


def test_check_does_not_import_torch():
    r = subprocess.run([sys.executable, "-c",
                        "import sys; from mgdsl.cli import main; main(['check', 'specs/mgnet.mg']); "
                        "assert 'torch' not in sys.modules, 'torch imported'"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

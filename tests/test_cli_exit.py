"""Exit codes: 0 ok, 2 for bad input, 70 (EX_SOFTWARE) for an internal error, which is one line unless MGDSL_DEBUG=1.

An internal error is provoked from outside mgdsl: standard output raises when written to (as a broken
terminal or a full disk would), so every command that prints reaches the error path.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mgdsl.cli import main

BOOM = """
import runpy, sys
class Boom:
    def write(self, s):
        raise RuntimeError("stdout is on fire")
    def flush(self):
        pass
sys.stdout = Boom()
sys.argv = ["mgdsl", *sys.argv[1:]]
runpy.run_module("mgdsl", run_name="__main__")
"""


def _mgdsl_with_broken_stdout(*argv, debug=None):
    env = {k: v for k, v in os.environ.items() if k != "MGDSL_DEBUG"}
    if debug is not None:
        env["MGDSL_DEBUG"] = debug
    return subprocess.run([sys.executable, "-c", BOOM, *argv], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("argv", [["check", "specs/mgnet.mg"], ["compile", "specs/mgnet.mg", "--json"],
                                  ["fmt", "specs/mgnet.mg"]])
def test_internal_error_exits_70_with_one_line(argv):
    r = _mgdsl_with_broken_stdout(*argv)
    assert r.returncode == 70, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("mgdsl: internal error: RuntimeError: stdout is on fire")
    assert "MGDSL_DEBUG=1" in lines[0]


def test_mgdsl_debug_shows_the_traceback():
    r = _mgdsl_with_broken_stdout("check", "specs/mgnet.mg", debug="1")
    assert r.returncode == 70
    assert "Traceback (most recent call last)" in r.stderr
    assert "RuntimeError: stdout is on fire" in r.stderr
    assert "in write" in r.stderr  # the frame that raised, not only the summary line


def test_bad_input_is_exit_2_not_an_internal_error(tmp_path):
    text = open("specs/mgnet.mg").read()
    line = text[:text.index("u + B(f - A(u))")].count("\n") + 1
    bad = tmp_path / "bad.mg"
    bad.write_text(text.replace("u + B(f - A(u))", "u + Bb(f - A(u))"))
    r = subprocess.run([sys.executable, "-m", "mgdsl", "check", str(bad)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "internal error" not in r.stderr and "Traceback" not in r.stderr
    assert f"{bad}:{line}:" in r.stderr and "undefined operator 'Bb'" in r.stderr


def test_spec_error_keeps_exit_2_when_stderr_is_a_closed_pipe(tmp_path):
    """`mgdsl check bad.mg 2>&1 | head -1`: a reader that stops early must not turn "bad input" into 1 ("no")."""
    bad = tmp_path / "bad.mg"
    bad.write_text("model m {\n  input x : 3 x 0 x 32\n}\n")
    r_end, w_end = os.pipe()
    os.close(r_end)  # the reader is gone before mgdsl writes: its error message meets a broken pipe
    try:
        rc = subprocess.run([sys.executable, "-m", "mgdsl", "check", str(bad)], stderr=w_end,
                            stdout=subprocess.DEVNULL, timeout=120).returncode
    finally:
        os.close(w_end)
    assert rc == 2


def test_a_name_valued_param_times_a_number_is_a_located_error(tmp_path):
    """-D width=abc with `2 * width`: the message quotes the value given, never 'abcabc'."""
    spec = tmp_path / "s.mg"
    text = Path("specs/mgnet.mg").read_text().replace("space u = width, f = width", "space u = 2 * width, f = width")
    assert "2 * width" in text
    spec.write_text(text)
    r = subprocess.run([sys.executable, "-m", "mgdsl", "check", str(spec), "-D", "width=abc"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "abcabc" not in r.stderr
    assert "2 * width needs a number, but param width is 'abc'" in r.stderr


def test_a_spec_error_under_json_is_also_json_on_stdout(tmp_path, capsys):
    bad = tmp_path / "bad.mg"
    bad.write_text(open("specs/mgnet.mg").read().replace("3 x 32 x 32", "3 x 0 x 32"))
    assert main(["compile", str(bad), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["errors"][0]["message"] == "input size must be positive, got 0"
    line = next(k for k, l in enumerate(bad.read_text().splitlines(), 1) if "3 x 0 x 32" in l)
    assert (out["errors"][0]["file"], out["errors"][0]["line"]) == (str(bad), line)

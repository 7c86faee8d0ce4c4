import json
import subprocess
import sys

import pytest

from mgdsl.cli import main
from mgdsl.library import bundled


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


# ---------------------------------------------------------------- help, version, exit codes (issue 11)

def _commands():
    import argparse
    from mgdsl.cli import build_parser
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return p, sub.choices


def test_every_argument_of_every_command_has_help_that_shows_its_default():
    import argparse
    _, commands = _commands()
    missing = []
    for name, cmd in commands.items():
        fmt = cmd.formatter_class(prog=name)
        for a in cmd._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            text = fmt._get_help_string(a)
            optional = a.option_strings and not a.required
            if not a.help or (optional and "default" not in text):
                missing.append(f"{name} {'/'.join(a.option_strings) or a.dest}")
    assert missing == [], "arguments without help or a default: " + ", ".join(missing)


def test_every_command_help_ends_with_examples_that_parse_and_name_real_specs():
    import shlex
    from mgdsl.cli import EXAMPLES
    from mgdsl.library import spec_path
    parser, commands = _commands()
    assert set(commands) <= set(EXAMPLES), f"commands without examples: {set(commands) - set(EXAMPLES)}"
    for name, cmd in commands.items():
        text = cmd.format_help()
        assert "examples:\n" in text and 2 <= len(EXAMPLES[name]) <= 3, name
        for example in EXAMPLES[name]:
            assert f"  {example}\n" in text.split("examples:\n")[1]
            argv = shlex.split(example.split("|")[0])
            assert argv[:2] == ["mgdsl", name]
            args = parser.parse_args(argv[1:])  # argparse exits (SystemExit) on a misspelt option
            for spec in getattr(args, "specs", None) or [getattr(args, "spec", None)]:
                if spec and "*" not in spec and not spec.startswith("my-"):
                    spec_path(spec)  # raises SpecError for a spec that is not bundled


def test_version_flag(capsys):
    import mgdsl
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"mgdsl {mgdsl.__version__}\n"


def test_fmt_check_answers_with_exit_1_and_internal_errors_exit_70(tmp_path, capsys, monkeypatch):
    spec = "specs/cnn/resnet.mg"
    ugly = tmp_path / "ugly.mg"
    ugly.write_text(open(spec).read().replace("  f_in      =", "  f_in ="))  # '=' no longer aligned
    assert main(["fmt", "--check", "specs/mgnet.mg", spec]) == 0
    assert main(["fmt", "--check", spec, str(ugly)]) == 1
    assert "ugly.mg: not canonical" in capsys.readouterr().err
    assert main(["fmt", "-i", str(ugly)]) == 0 and main(["fmt", "--check", str(ugly)]) == 0
    import mgdsl.fmt
    monkeypatch.setattr(mgdsl.fmt, "fmt", lambda model: 1 / 0)
    assert main(["fmt", "specs/mgnet.mg"]) == 70
    assert "internal error: ZeroDivisionError" in capsys.readouterr().err


# ---------------------------------------------------------------- MACs in the user-facing outputs (issue 11)

def test_compile_json_reports_macs_in_total_and_per_operator(capsys):
    from mgdsl import compile_spec
    from mgdsl.cost import macs
    assert main(["compile", "table2/resnet18", "--json", "-D", "width=16"]) == 0
    s = json.loads(capsys.readouterr().out)
    want = macs(compile_spec("table2/resnet18", {"width": 16}))
    assert isinstance(s["macs"], int) and s["macs"] == want.total > 0
    assert {o["name"]: o["macs"] for o in s["operators"]} == want.by_instance
    assert sum(o["macs"] for o in s["operators"]) == s["macs"]


def test_compile_table_list_and_render_header_show_macs(capsys, tmp_path):
    assert main(["compile", "table2/resnet18"]) == 0
    out = capsys.readouterr().out
    assert "multiply-accumulates per image (forward): 555," in out and "(555 M)" in out
    assert main(["list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["mgnet-official"]["macs"] == rows["mgnet"]["macs"]  # the same network (Algorithm 3)
    assert rows["table2/mgnet-256-256-pi1"]["macs"] == rows["mgnet"]["macs"]  # Ar[1] replaces A[1] in one use
    assert main(["list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("table2/resnet18 "))
    assert line.split()[1:4] == ["11,173,962", "555", "M"]
    assert main(["render", "table2/resnet18", "-o", str(tmp_path / "r.dot")]) == 0
    assert "(11,173,962 params, 555 M MACs)" in (tmp_path / "r.dot").read_text()


# ---------------------------------------------------------------- compile --summary (issue 20)

@pytest.mark.parametrize("spec", [s.name for s in bundled()])
def test_summary_totals_are_compile_jsons_params_and_macs_for_every_shipped_spec(capsys, spec):
    assert main(["compile", spec, "--json"]) == 0
    want = json.loads(capsys.readouterr().out)
    assert main(["compile", spec, "--summary", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    rows = got["uses"]
    assert sum(r["params"] for r in rows) == want["params"] and sum(r["macs"] for r in rows) == want["macs"]
    by_op = {}
    for r in rows:
        by_op[r["operator"]] = by_op.get(r["operator"], 0) + r["macs"]
        if r["params_at"] is not None:  # a shared operator's later row points at the row that counted it
            first = rows[r["params_at"] - 1]
            assert r["params"] == 0 and first["operator"] == r["operator"] and first["params_at"] is None
    assert by_op == {o["name"]: o["macs"] for o in want["operators"] if o["name"] in by_op}
    assert main(["compile", spec, "--summary"]) == 0
    assert f"total: {want['params']:,} parameters, {want['macs']:,} MACs" in capsys.readouterr().out


def test_summary_rows_of_mgnet_are_the_hand_computed_ones(capsys):
    # width 16 on 32x32: a 3x3 16->16 convolution is 16*16*9 = 2,304 weights and 2,304 * 32*32 MACs on grid 1;
    # eta[1] runs inside B[1, 1] and B[1, 2] and is counted once; Pi[1] halves the grid
    assert main(["compile", "mgnet", "-D", "width=16", "--summary", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["uses"]
    eta = [r for r in rows if r["operator"] == "eta[1]"]
    assert [(r["depth"], r["params"], r["params_at"], r["macs"]) for r in eta] == [
        (1, 2304, None, 2304 * 1024), (1, 0, eta[0]["row"], 2304 * 1024)]
    assert rows[eta[0]["row"] - 2]["operator"] == "B[1, 1]"  # nested right after its parent
    pi = next(r for r in rows if r["operator"] == "Pi[1]")
    assert (pi["grid"], pi["equation"], pi["input"], pi["output"]) == ("1->2", "coarsen", "u 16x32x32", "u 16x16x16")
    assert (pi["params"], pi["macs"]) == (2304 + 32, 2304 * 256)  # conv + BN's weight and bias; 16x16 outputs
    fc = rows[-1]
    assert (fc["operator"], fc["grid"], fc["input"], fc["output"], fc["params"], fc["macs"]) == (
        "fc", "pooled", "u 16", "classes 10", 170, 160)

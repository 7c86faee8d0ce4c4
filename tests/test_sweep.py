"""mgdsl sweep: an Optuna study over any spec's params, trials named by their -D values, continued from its
storage; a bad -p stops before any training (exit 2, one line naming the problem)."""
import json

import pytest

import mgdsl
import mgdsl.cost
from mgdsl import SpecError
from mgdsl.cli import main
from mgdsl.sweep import Axis, parse_axes, parse_axis
from tiny_specs import TINY_MGNET

pytest.importorskip("optuna")

# the tiny two-grid MgNet with nu as a param too
SPEC = TINY_MGNET.replace("  smooth 1", "  param nu = 1\n  smooth nu")
PARAMS = {"width": 4, "nu": 1}


@pytest.fixture
def spec(tmp_path):
    p = tmp_path / "tiny.mg"
    p.write_text(SPEC)
    return str(p)


def _sweep(spec, out, *extra):
    return main(["sweep", spec, "-p", "width=4:6", "-p", "nu=1,2", "--train", "digits", "--epochs", "1",
                 "--threads", "1", "--batch-size", "64", "--out", str(out), *extra])


def test_two_trials_then_the_same_command_continues_the_study(spec, tmp_path, capsys):
    out, db = tmp_path / "sw", f"sqlite:///{tmp_path / 'study.db'}"
    assert _sweep(spec, out, "--trials", "2", "--storage", db) == 0
    first = json.loads((out / "trials.json").read_text())["trials"]
    assert [r["trial"] for r in first] == [0, 1]
    for r in first:  # named by the -D values; the run folder is that run, trained with them
        assert r["name"] == f"width={r['width']},nu={r['nu']}" and 4 <= int(r["width"]) <= 6 and r["nu"] in "12"
        config = json.loads((out / "trials" / r["name"] / "config.json").read_text())
        assert config["params_override"] == {"width": int(r["width"]), "nu": int(r["nu"])}
        ir = mgdsl.compile_spec(spec, config["params_override"], input_shape=(1, 8, 8), classes=10)  # on digits
        assert (r["params"], r["macs"]) == (ir.total_params, mgdsl.cost.macs(ir).total)
        assert 0 <= r["best_test_acc"] <= 1 and r["epochs_done"] == 1
    table = (out / "table.md").read_text()
    assert table.startswith("| trial | width | nu | params | MACs |") and len(table.splitlines()) == 4
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert table in printed and "pareto.png" in printed

    assert _sweep(spec, out, "--trials", "1", "--storage", db) == 0  # continued: one more in the same study
    again = json.loads((out / "trials.json").read_text())["trials"]
    assert [r["trial"] for r in again] == [0, 1, 2] and again[:2] == first

    # a continuation with other axes would mix two searches in one study: refused, nothing trained
    assert main(["sweep", spec, "-p", "width=4:8", "-p", "nu=1,2", "--train", "digits", "--epochs", "1",
                 "--out", str(out), "--storage", db, "--trials", "1"]) == 2
    assert "made with other settings: axes" in capsys.readouterr().err
    assert len(json.loads((out / "trials.json").read_text())["trials"]) == 3


@pytest.mark.parametrize("p,words", [
    ("widht=4:8", "the spec has no param 'widht'\n  hint: did you mean 'width'?"),
    ("width", "expected name=LOW:HIGH[:log] or name=A,B,..."),
    ("width=8:4", "LOW must be below HIGH"),
    ("width=0:8:log", "a log range needs LOW > 0"),
    ("width=4-9", "'4-9' is not a number"),
    ("width=4:8:9", "a range is LOW:HIGH or LOW:HIGH:log"),
    ("nu=1,1", "the choices must be distinct"),
    ("width=0:8", "at width=0 the spec does not compile"),  # the range's end is compiled before any trial
    ("width=4:8 --trials 0", "--trials 0: a sweep needs at least 1"),
    ("width=4:8 --epochs 0", "--epochs 0: a sweep needs at least 1"),
])
def test_a_bad_p_is_exit_2_before_any_training(spec, tmp_path, capsys, p, words):
    assert main(["sweep", spec, "-p", *p.split(), "--train", "digits", "--out", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "sw").exists()


def test_a_param_both_swept_and_fixed_is_refused(spec, tmp_path, capsys):
    assert main(["sweep", spec, "-p", "width=4:8", "-D", "width=4", "--train", "digits",
                 "--out", str(tmp_path / "sw")]) == 2
    assert "width is also fixed with -D" in capsys.readouterr().err


def test_axes_read_ints_floats_logs_and_choices():
    assert parse_axis("width=8:64:log", PARAMS) == Axis("width", "int", 8, 64, True)
    assert parse_axis("width=0.5:2", PARAMS) == Axis("width", "float", 0.5, 2, False)
    assert parse_axis("nu=1,2", PARAMS) == Axis("nu", "choice", choices=("1", "2"))
    assert [a.text() for a in parse_axes(["width=8:64:log", "nu=1,2"], PARAMS)] == ["width=8:64:log", "nu=1,2"]
    with pytest.raises(SpecError, match="given twice"):
        parse_axes(["nu=1,2", "nu=3,4"], PARAMS)
    with pytest.raises(SpecError, match="is a list"):
        parse_axis("chans=8:16", {"chans": (8, 16)})


def test_a_trial_the_spec_refuses_fails_with_its_reason_and_the_sweep_goes_on(tmp_path, capsys):
    """groups 2 needs an even width: both ends of 4:6 compile, the first trial (seed 0) draws 5."""
    spec = tmp_path / "g.mg"
    spec.write_text(SPEC.replace("A[l]    = conv3(u -> f)", "A[l]    = conv3(u -> f, groups 2)"))
    assert main(["sweep", str(spec), "-p", "width=4:6", "--train", "digits", "--epochs", "1", "--trials", "1",
                 "--out", str(tmp_path / "sw")]) == 1  # no trial trained
    (row,) = json.loads((tmp_path / "sw" / "trials.json").read_text())["trials"]
    assert row["name"] == "width=5" and "groups=2 must divide 5 and 5" in row["error"]
    assert "| 0 | 5 | failed: " in (tmp_path / "sw" / "table.md").read_text()
    err = capsys.readouterr().err
    assert "mgdsl: trial 0 width=5: failed:" in err and "Traceback" not in err


def test_every_sweep_example_sweeps_params_its_spec_has():
    """`mgdsl sweep --help` showed `-p lr=0.02:0.2:log`, which every spec refuses (lr is a training flag, not a
    param): each example's -p must name params of its spec, and the -p hint's examples must parse as axes."""
    import shlex

    from mgdsl.cli import EXAMPLES, build_parser
    from mgdsl.sweep import EXAMPLES as HINT
    for example in EXAMPLES["sweep"]:
        args = build_parser().parse_args(shlex.split(example)[1:])
        parse_axes(args.axes, mgdsl.compile_ir(args.spec).params)  # raises SpecError for an unknown param
    hinted = [w for w in HINT.split() if "=" in w]
    assert [parse_axis(w, {w.split("=")[0]: "1"}).name for w in hinted] == ["width", "omega", "nu"]


@pytest.mark.parametrize("flags, words", [
    (["--storage", "bogus://x"], "--storage bogus://x: cannot open it"),
    (["--storage", "notaurl"], "--storage notaurl: cannot open it"),
    (["--train", "nosuch.npz"], "--train nosuch.npz: no such file or folder"),
    (["--train", "digits", "--test", "nosuch.npz"], "--test nosuch.npz: no such file or folder"),
])
def test_a_storage_or_data_that_cannot_be_opened_is_exit_2_before_any_trial(tmp_path, capsys, flags, words):
    """A bad --storage URL was an internal error (70); missing data ran every trial to the same failure, wrote the
    sweep folder and exited 1. Both are one line and exit 2 now, with nothing written."""
    flags = flags if "--train" in flags else ["--train", "digits", *flags]
    out = tmp_path / "sw"
    assert main(["sweep", "specs/mgnet.mg", "-p", "width=4:6", *flags, "--epochs", "1", "--trials", "1",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert words in err and "internal error" not in err and "trial" not in err and not out.exists()

"""mgdsl.training.evaluate (`mgdsl eval`): the per-class accuracy and confusion matrix of a real tiny run, as
printed, as --json and as the report files (JSON and PNG). Scoring itself is in test_train.py (eval of a run
reproduces its summary) and test_metrics.py (the sums, by hand)."""
import json

import numpy as np
import pytest
import torch

from mgdsl.cli import main
from mgdsl.training.evaluate import names_of
from helpers import colour_set, one_thread  # noqa: F401  (an autouse fixture: one torch thread per test)

TINY = ["-D", "width=4", "-D", "nu=1"]

NAMES = ["red", "green", "blue"]  # colour_set's label k: channel k is the bright one


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-epoch run on the colour set, whose .npz files carry class names."""
    d = tmp_path_factory.mktemp("colours")
    for name, n, seed in (("train", 96, 0), ("test", 30, 1)):
        colour_set(d / f"{name}.npz", n, seed)
        z = dict(np.load(d / f"{name}.npz"))
        np.savez(d / f"{name}.npz", **z, classes=np.array(NAMES))
    out = d / "run"
    assert main(["compile", "specs/mgnet.mg", *TINY, "--train", str(d / "train.npz"), "--test", str(d / "test.npz"),
                 "--batch-size", "16", "--epochs", "2", "--threads", "1", "--out", str(out)]) == 0
    return out


def _eval(capsys, *argv):
    capsys.readouterr()
    assert main(["eval", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_per_class_numbers_add_up_to_the_overall_accuracy_and_name_the_npz_classes(run, capsys):
    r = _eval(capsys, run)
    summary = json.loads((run / "summary.json").read_text())
    assert r["top1"] == summary["final_test_acc"] and r["n"] == 30
    cm = np.array(r["confusion"])
    y = np.load(run.parent / "test.npz")["y"]
    assert cm.shape == (3, 3) and cm.sum(1).tolist() == np.bincount(y, minlength=3).tolist()  # rows: true class
    assert np.trace(cm) == round(r["top1"] * r["n"])
    rows = r["per_class"]
    assert [c["class"] for c in rows] == NAMES and r["class_names"] == NAMES
    assert sum(c["correct"] for c in rows) == np.trace(cm) and sum(c["images"] for c in rows) == 30
    assert sum(c["accuracy"] * c["images"] for c in rows) / 30 == pytest.approx(r["top1"], abs=1e-12)
    assert all(c["accuracy"] == c["correct"] / c["images"] == cm[i, i] / cm[i].sum() for i, c in enumerate(rows))


def test_weights_that_always_guess_one_class_fill_one_column_with_the_class_counts(run, tmp_path, capsys):
    state = torch.load(run / "model.pt")
    state["fc.weight"].zero_()
    state["fc.bias"].copy_(torch.tensor([0.0, 0.0, 1.0]))  # every image: "blue"
    torch.save(state, tmp_path / "always-blue.pt")
    r = _eval(capsys, run, "--weights", tmp_path / "always-blue.pt")
    counts = np.bincount(np.load(run.parent / "test.npz")["y"], minlength=3).tolist()
    assert r["confusion"] == [[0, 0, counts[0]], [0, 0, counts[1]], [0, 0, counts[2]]]
    assert [c["accuracy"] for c in r["per_class"]] == [0.0, 0.0, 1.0]
    assert r["files"][0] == str(run / "eval-always-blue.json")  # a run folder given: the report goes into it


def test_the_report_files_hold_what_json_prints_and_a_picture(run, tmp_path, capsys):
    r = _eval(capsys, run, "--no-tta")
    assert r["files"] == [str(run / "eval-model-no-tta.json"), str(run / "eval-model-no-tta.png")]
    saved = json.loads((run / "eval-model-no-tta.json").read_text())
    assert saved == {k: v for k, v in r.items() if k != "files"}
    assert (run / "eval-model-no-tta.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = _eval(capsys, run, "--weights", run / "best.pt", "--out", tmp_path / "reports" / "best")
    assert r["files"] == [str(tmp_path / "reports" / "best.json"), str(tmp_path / "reports" / "best.png")]
    assert json.loads((tmp_path / "reports" / "best.json").read_text())["top1"] == r["top1"]


def test_the_text_output_lists_each_class_and_the_matrix(run, capsys):
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    r = json.loads((run / "eval-model.json").read_text())
    for c in r["per_class"]:
        assert f"{c['class']}  " in out and f"{100 * c['accuracy']:.2f}%" in out
    assert "rows: true class, columns: predicted class" in out and str(run / "eval-model.png") in out


def test_a_report_that_cannot_be_written_is_one_line_and_exit_2(run, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    capsys.readouterr()
    assert main(["eval", str(run), "--out", str(tmp_path / "file" / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the eval report" in err and "Traceback" not in err


def test_a_run_folder_that_cannot_be_written_still_gets_its_scores_and_a_warning(run, capsys, monkeypatch):
    # a read-only run folder (another user's, a shared disk): the report is not written, the scores still print
    from mgdsl.training import runs

    def read_only(path, data):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(runs, "atomic_write", read_only)
    r = _eval(capsys, run, "--weights", run / "best.pt")
    assert r["files"] == [] and len(r["per_class"]) == 3
    capsys.readouterr()
    assert main(["eval", str(run), "--weights", str(run / "best.pt")]) == 0
    out = capsys.readouterr()
    assert "warning: cannot write the eval report" in out.err and "Permission denied" in out.err
    assert "top-1" in out.out and "per-class accuracy and confusion matrix:" not in out.out


def test_class_names_come_from_an_image_folder_or_an_npz_and_digits_have_none(tmp_path):
    for c in ("cat", "dog"):
        (tmp_path / "imgs" / "train" / c).mkdir(parents=True)
    (tmp_path / "imgs" / "test").mkdir()
    assert names_of(str(tmp_path / "imgs"), str(tmp_path)) == ["cat", "dog"]  # the train/ split's folders
    np.savez(tmp_path / "k.npz", x=np.zeros((1, 2, 2, 1), np.uint8), y=np.zeros(1, int), classes=4)
    assert names_of(str(tmp_path / "k.npz"), str(tmp_path)) is None  # a count, not names
    assert names_of("digits", str(tmp_path)) is None


def test_weights_that_are_not_a_pytorch_file_say_so_in_one_line(run, tmp_path, capsys):
    """A text file given as --weights is not a spec/-D mismatch (it was 'Memo value not found at index 101')."""
    bad = tmp_path / "x.pt"
    bad.write_text("hello\n")
    capsys.readouterr()
    assert main(["eval", str(run), "--weights", str(bad), "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: not a PyTorch weights file" in err and "Memo" not in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()

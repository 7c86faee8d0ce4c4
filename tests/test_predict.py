"""mgdsl.load_run and `mgdsl predict` (mgdsl.training.predict): a run's model with its own preprocessing."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import ROOT
import mgdsl
from mgdsl.cli import main
from mgdsl.training.evaluate import evaluate_run
from mgdsl.training.data import load_dataset

TINY = ["-D", "width=4", "-D", "nu=1", "--epochs", "1", "--threads", "1"]
COLOURS = ["red", "green", "blue"]


def colour_set(path, n, seed):
    """Label = which colour channel is bright, under noise; the class names ship in the file."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.random((n, 16, 16, 3)) * 100).astype(np.uint8)
    x[np.arange(n), :, :, y] += 100
    np.savez(path, x=x, y=y, classes=np.array(COLOURS))
    return x, y


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A digits run (grey 8x8, 10 classes) and an .npz run (RGB 16x16, named classes, flip TTA), one epoch each."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("runs")
    colour_set(d / "train.npz", 96, 0)
    x, y = colour_set(d / "test.npz", 40, 1)
    spec = str(ROOT / "specs/mgnet.mg")
    assert main(["compile", spec, *TINY, "--train", "digits", "--batch-size", "64", "--out", str(d / "digits")]) == 0
    assert main(["compile", spec, *TINY, "--train", str(d / "train.npz"), "--test", str(d / "test.npz"), "--flip",
                 "--batch-size", "16", "--out", str(d / "npz")]) == 0
    torch.set_num_threads(before)
    digits = load_dataset("digits", None, "")
    return {"digits": (d / "digits", digits.x_test, digits.y_test), "npz": (d / "npz", x, y), "dir": d}


@pytest.mark.parametrize("name", ["digits", "npz"])
def test_load_run_scores_the_raw_test_images_as_mgdsl_eval_does(runs, name):
    run, x, y = runs[name]
    p = mgdsl.load_run(run)
    assert not p.model.training and p.weights == run / "model.pt"
    hits = int((p.logits(x).argmax(1).numpy() == y).sum())
    r = evaluate_run(str(run))
    assert hits == round(r["top1"] * r["n"]) and r["n"] == len(y)
    assert p.tta == r["tta"] == (name == "npz")  # the npz run flipped, so it was scored with flip TTA
    assert p.classes == (COLOURS if name == "npz" else [str(k) for k in range(10)])
    assert p.predict(x[:3]) == [p.classes[k] for k in p(x[:3]).argmax(1).tolist()]
    assert torch.allclose(p(x[:4]).sum(1), torch.ones(4))
    assert mgdsl.load_run(run, "best").weights == run / "best.pt"


def _pngs(folder, x, wide=False):
    """The images as PNGs; wide: with noise columns added left and right (a quarter of the width each)."""
    folder.mkdir(parents=True)
    names = []
    rng = np.random.default_rng(0)
    for i, a in enumerate(x):
        if wide:
            q = a.shape[1] // 4
            a = np.concatenate([rng.integers(0, 256, (a.shape[0], q, a.shape[2]), dtype=np.uint8), a,
                                rng.integers(0, 256, (a.shape[0], q, a.shape[2]), dtype=np.uint8)], 1)
        im = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
        sub = folder / ("a" if i % 2 else "b")  # a folder's sub-folders are read too
        sub.mkdir(exist_ok=True)
        im.save(sub / f"{i:03d}.png")
        names.append(str(sub / f"{i:03d}.png"))
    return names


@pytest.mark.parametrize("name", ["digits", "npz"])
def test_predict_on_pngs_of_the_test_set_agrees_with_the_model(runs, name, tmp_path, capsys):
    run, x, _ = runs[name]
    x = x[:12]
    p = mgdsl.load_run(run)
    probs = p(x)
    names = _pngs(tmp_path / "png", x)
    capsys.readouterr()
    assert main(["predict", str(run), str(tmp_path / "png"), "--top-k", "2", "--batch-size", "5", "--json",
                 str(tmp_path / "p.json")]) == 0
    rows = {r["input"]: r["top"] for r in json.loads((tmp_path / "p.json").read_text())["predictions"]}
    assert sorted(rows) == sorted(names)
    for i, f in enumerate(names):
        top = rows[f]
        assert len(top) == 2 and top[0]["class"] == p.classes[int(probs[i].argmax())]
        assert top[0]["prob"] == pytest.approx(float(probs[i].max()), abs=1e-6)
    # the same images as an .npz, and wider (the shorter side is the run's size: the centre crop is the image)
    np.savez(tmp_path / "x.npz", x=x)
    _pngs(tmp_path / "big", x, wide=True)
    for inp in (str(tmp_path / "x.npz"), str(tmp_path / "big")):
        assert main(["predict", str(run), inp, "--csv", str(tmp_path / "p.csv")]) == 0
        lines = (tmp_path / "p.csv").read_text().splitlines()
        assert lines[0] == "input,class1,prob1" and len(lines) == 13
        got = dict(line.split(",")[:2] for line in lines[1:])
        want = {f"{tmp_path / 'x.npz'}[{i}]" if inp.endswith("npz") else f.replace("/png/", "/big/"):
                p.classes[int(probs[i].argmax())] for i, f in enumerate(names)}
        assert got == want
    assert "12 images were not" in capsys.readouterr().err  # the big ones, said once
    assert main(["predict", str(run), names[0], "--top-k", "3"]) == 0
    out = capsys.readouterr().out.split()
    assert out[0] == names[0] and out[1] == p.classes[int(probs[0].argmax())] and len(out) == 7


def _truncated_png(path, x):
    Image.fromarray(x[0][..., 0]).resize((64, 64)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # the header reads; the pixels do not


BAD = {  # what is given, words of the one error line, the path the line must name
    "not an image": (lambda d, x: (d / "notes.png").write_text("hello"), "not an image file", "notes.png"),
    "wrong channels": (lambda d, x: Image.new("RGB", (8, 8)).save(d / "rgb.png"),
                       "3 channels (RGB), but the model takes 1 (grey)", "rgb.png"),
    "empty folder": (lambda d, x: (d / "empty").mkdir(), "an empty folder", "empty"),
    "missing input": (lambda d, x: None, "no such file or folder", "gone.png"),
    "npz of the wrong channels": (lambda d, x: np.savez(d / "rgb.npz", x=np.zeros((2, 8, 8, 3), np.uint8)),
                                  "expected uint8 N x H x W x 1", "rgb.npz"),
    "npz without x": (lambda d, x: np.savez(d / "nox.npz", images=x), "no key x", "nox.npz"),
    "truncated image": (lambda d, x: _truncated_png(d / "cut.png", x), "not a readable image", "cut.png"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_naming_the_file_exit_2_and_nothing_written(runs, case, tmp_path, capsys):
    make, words, culprit = BAD[case]
    run, x, _ = runs["digits"]
    Image.fromarray(x[0][..., 0]).save(tmp_path / "good.png")  # a good image first: nothing is written anyway
    make(tmp_path, x[:2])
    for out in ("--json", "--csv"):
        capsys.readouterr()
        assert main(["predict", str(run), str(tmp_path / "good.png"), str(tmp_path / culprit), out,
                     str(tmp_path / "p.out")]) == 2
        cap = capsys.readouterr()
        err = cap.err.strip()
        assert cap.out == ""  # --json FILE names the output file: no JSON error object on stdout
        assert len(err.splitlines()) == 1 and words in err and str(tmp_path / culprit) in err, err
        assert not list(tmp_path.glob("p.out*"))


@pytest.mark.parametrize("k, words", [("0", "--top-k 0: must be at least 1"),
                                      ("11", "--top-k 11: the run has 10 classes")])
def test_a_top_k_of_zero_or_more_than_the_classes_is_an_error_and_nothing_written(runs, k, words, tmp_path, capsys):
    run, x, _ = runs["digits"]
    Image.fromarray(x[0][..., 0]).save(tmp_path / "a.png")
    capsys.readouterr()
    assert main(["predict", str(run), str(tmp_path / "a.png"), "--top-k", k, "--csv", str(tmp_path / "p.csv")]) == 2
    cap = capsys.readouterr()
    assert words in cap.err and "batch-size" not in cap.err and cap.out == "" and not (tmp_path / "p.csv").exists()


def test_an_output_file_that_is_a_folder_is_one_line_exit_2(runs, tmp_path, capsys):
    run, x, _ = runs["digits"]
    Image.fromarray(x[0][..., 0]).save(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    for flag in ("--json", "--csv"):
        capsys.readouterr()
        assert main(["predict", str(run), str(tmp_path / "a.png"), flag, str(tmp_path / "out")]) == 2
        cap = capsys.readouterr()
        assert cap.err.startswith(f"mgdsl: error: {tmp_path / 'out'}: is a folder") and cap.out == "", cap.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "out"] and not any((tmp_path / "out").iterdir())


def test_an_image_given_where_the_run_folder_goes_says_so(tmp_path, capsys):
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'a.png'}: a file, not a run folder" in err and "RUN_DIR INPUT" in err


def test_a_missing_run_folder_is_one_line_exit_2(tmp_path, capsys):
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "no-run"), str(tmp_path / "a.png"), "--json", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mgdsl: error: {tmp_path / 'no-run'}: no such run folder" and not (tmp_path / "p.json").exists()


def test_a_streamed_folder_run_predicts_through_its_own_resize_and_crop(tmp_path, capsys):
    """An image-folder run streams: its evaluation resized and centre-cropped every image to the spec's 32x32,
    and load_run and predict do the same, so they score what `mgdsl eval` scores."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 3)):
        for k, c in enumerate(COLOURS):
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for i in range(n):
                a = (rng.random((12, 14, 3)) * 100).astype(np.uint8)
                a[..., k] += 100
                Image.fromarray(a).save(tmp_path / "data" / split / c / f"{i}.png")
    run = tmp_path / "run"
    assert main(["compile", str(ROOT / "specs/mgnet.mg"), *TINY, "--train", str(tmp_path / "data"), "--batch-size",
                 "8", "--workers", "0", "--out", str(run)]) == 0
    p = mgdsl.load_run(run)
    assert p.preprocess.resize_all and p.classes == sorted(COLOURS)
    r = evaluate_run(str(run))
    assert main(["predict", str(run), str(tmp_path / "data" / "test"), "--csv", str(tmp_path / "p.csv")]) == 0
    rows = [line.split(",") for line in (tmp_path / "p.csv").read_text().splitlines()[1:]]
    assert len(rows) == r["n"] == 9
    assert sum(Path(f).parent.name == c for f, c, _ in rows) == round(r["top1"] * r["n"])
    assert "were not" not in capsys.readouterr().err  # resizing is the run's own step here, not news

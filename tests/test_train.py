import json

import numpy as np
import pytest
import torch

from mgdsl.cli import main

TINY = ["-D", "width=4", "-D", "nu=1"]


@pytest.fixture
def tiny_npz(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("train", 64), ("test", 32)):
        y = rng.integers(0, 3, n)
        x = (rng.random((n, 16, 16, 3)) * 80 + y[:, None, None, None] * 60).astype(np.uint8)
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
    return tmp_path


def _train(tiny_npz, out, *extra):
    return main(["compile", "specs/mgnet.mg", "--train", str(tiny_npz / "train.npz"), "--test",
                 str(tiny_npz / "test.npz"), "--batch-size", "16", "--out", str(out), *TINY, *extra])


def test_one_epoch_writes_every_output(tiny_npz, tmp_path):
    out = tmp_path / "run"
    assert _train(tiny_npz, out, "--epochs", "1") == 0
    for f in ("config.json", "metrics.jsonl", "model.pt", "last.pt", "curves.png", "summary.json"):
        assert (out / f).exists(), f
    s = json.loads((out / "summary.json").read_text())
    assert 0 <= s["final_test_acc"] <= 1 and 0 <= s["best_test_acc"] <= 1 and s["epochs"] == 1 and s["params"] > 0
    m = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(m) == 1 and {"epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds",
                            "images_per_s"} <= set(m[0])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["momentum"] == 0.9 and len(cfg["spec_sha256"]) == 64
    assert main(["eval", "specs/mgnet.mg", *TINY, "--weights", str(out / "model.pt"),
                 "--test", str(tiny_npz / "test.npz")]) == 0


def test_resume_gives_the_same_metrics(tiny_npz, tmp_path):
    torch.use_deterministic_algorithms(True)
    try:
        full = tmp_path / "full"
        assert _train(tiny_npz, full, "--epochs", "3") == 0
        # a run that stopped after epoch 1 of the same 3-epoch schedule, then resumed
        lines = (full / "metrics.jsonl").read_text().splitlines()
        one = tmp_path / "stop"
        assert _train(tiny_npz, one, "--epochs", "1") == 0
        cfg = json.loads((one / "config.json").read_text())
        cfg["config"]["epochs"] = 3
        cfg["config"]["lr_step"] = json.loads((full / "config.json").read_text())["config"]["lr_step"]
        (one / "config.json").write_text(json.dumps(cfg))
        assert main(["compile", "specs/mgnet.mg", *TINY, "--train", "x", "--resume", str(one)]) == 0
        a = [json.loads(l) for l in lines]
        b = [json.loads(l) for l in (one / "metrics.jsonl").read_text().splitlines()]
        assert len(b) == 3
        for x, y in zip(a, b):
            for k in ("train_loss", "train_acc", "test_loss", "test_acc", "lr"):
                assert x[k] == pytest.approx(y[k], rel=1e-9, abs=1e-12), (k, x, y)
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("dataset,words", [("imagenet22k", "unknown data set"), ("nope.npz", "no such file")])
def test_bad_dataset_exit_2(dataset, words, capsys):
    assert main(["compile", "specs/mgnet.mg", *TINY, "--train", dataset, "--test", "t.npz"]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_wrong_npz_layout_exit_2(tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 3, 8, 8), np.float32), y=np.zeros(4, np.int64))
    assert main(["compile", "specs/mgnet.mg", *TINY, "--train", str(tmp_path / "bad.npz"), "--test",
                 str(tmp_path / "bad.npz")]) == 2
    assert "expected uint8 N x H x W x C" in capsys.readouterr().err


def test_spec_needing_three_channels_fed_one_channel(tmp_path, capsys):
    spec = tmp_path / "rgb.mg"
    spec.write_text("""model rgb {
  input f : 3 x 8 x 8
  classes 10
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
    assert main(["compile", str(spec), "--train", "digits", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot take this data (1 x 8 x 8" in err and "has 1 channels but space f has 3" in err


def test_official_recipe_resolves_documented_values():
    from mgdsl.training.recipes import resolve_recipe
    r = resolve_recipe("official")
    assert (r["weight_decay"], r["lr_step"], r["epochs"], r["lr"], r["momentum"], r["batch_size"]) == \
        (5e-4, 50, 300, 0.1, 0.9, 128)
    r = resolve_recipe("paper")
    assert (r["weight_decay"], r["lr_step"], r["epochs"]) == (0.0, 30, 120)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_npz, tmp_path, capsys):
    out = tmp_path / "nan"
    assert _train(tiny_npz, out, "--epochs", "1") == 0
    good = (out / "last.pt").read_bytes()
    cfg = json.loads((out / "config.json").read_text())
    cfg["config"]["epochs"], cfg["config"]["lr"] = 3, 1e30
    (out / "config.json").write_text(json.dumps(cfg))
    # resume with an absurd learning rate: the loss blows up in epoch 2
    ck = torch.load(out / "last.pt", weights_only=False)
    for g in ck["optimizer"]["param_groups"]:
        g["lr"] = 1e30
    ck["scheduler"]["base_lrs"] = [1e30] * len(ck["scheduler"]["base_lrs"])
    ck["scheduler"]["_last_lr"] = [1e30] * len(ck["scheduler"]["_last_lr"])
    torch.save(ck, out / "last.pt")
    good = (out / "last.pt").read_bytes()
    assert main(["compile", "specs/mgnet.mg", *TINY, "--train", "x", "--resume", str(out)]) == 1
    assert "the training loss is" in capsys.readouterr().err
    assert (out / "last.pt").read_bytes() == good  # untouched


def test_cifar_without_network_says_how_to_pass_a_local_copy(monkeypatch, tmp_path, capsys):
    import torchvision

    def offline(*a, **k):
        raise OSError("network unreachable")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    assert main(["compile", "specs/mgnet.mg", *TINY, "--train", "cifar10", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "could not download cifar10" in err and "--data" in err and "Traceback" not in err


def test_image_folder_dataset(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            d = tmp_path / "imgs" / split / c
            d.mkdir(parents=True)
            for k in range(6):
                Image.fromarray(rng.integers(0, 255, (12, 12, 3)).astype(np.uint8)).save(d / f"{k}.png")
    out = tmp_path / "run"
    assert main(["compile", "specs/mgnet.mg", *TINY, "--train", str(tmp_path / "imgs"), "--epochs", "1",
                 "--batch-size", "4", "--data-mode", "memory", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["input_shape"] == [3, 12, 12] and cfg["classes"] == 2  # in memory, the spec adapts to the images
    # streamed (the default for a folder), images are resized to the spec's input
    assert main(["compile", "specs/mgnet.mg", *TINY, "--train", str(tmp_path / "imgs"), "--epochs", "1",
                 "--batch-size", "4", "--workers", "0", "--out", str(tmp_path / "s")]) == 0
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    assert cfg["input_shape"] == [3, 32, 32] and cfg["classes"] == 2 and cfg["data_plan"]["mode"] == "stream"


def test_ctrl_c_leaves_a_valid_last_checkpoint(tiny_npz, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "int"
    p = subprocess.Popen([sys.executable, "-m", "mgdsl.cli", "compile", "specs/mgnet.mg", *TINY, "--train",
                          str(tiny_npz / "train.npz"), "--test", str(tiny_npz / "test.npz"), "--batch-size", "16",
                          "--epochs", "500", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err.decode()[-500:]
    assert b"resume with --resume" in err and b"Traceback" not in err
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["epoch"] >= 1 and not list(out.glob("*.tmp"))
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) >= ck["epoch"]


def test_an_earlier_run_is_never_overwritten(tiny_npz, tmp_path, capsys, monkeypatch):
    out = tmp_path / "keep"
    assert _train(tiny_npz, out, "--epochs", "1") == 0
    before = (out / "model.pt").read_bytes()
    assert _train(tiny_npz, out, "--epochs", "1") == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "model.pt").read_bytes() == before
    assert _train(tiny_npz, out, "--epochs", "1", "--overwrite") == 0
    # the default folder is numbered instead
    monkeypatch.chdir(tmp_path)
    from mgdsl.training.runs import fresh_run_dir
    (tmp_path / "runs" / "m-d").mkdir(parents=True)
    (tmp_path / "runs" / "m-d" / "model.pt").write_bytes(b"x")
    assert fresh_run_dir("runs/m-d") == "runs/m-d-2"

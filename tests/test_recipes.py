"""Recipes (mgdsl/training/recipes.py): the ImageNet recipe's numbers and schedule, and one real step of it
on the authors' 71.3M-parameter ImageNet MgNet."""
import json

import numpy as np
import pytest
from PIL import Image

from mgdsl.cli import main
from mgdsl.training.recipes import Config, fill_defaults, lr_at


def resolve_recipe(recipe, **flags):
    return fill_defaults(Config(recipe=recipe, **flags), flip_default=True)


def test_imagenet_recipe_is_goyal_et_al_with_linear_scaling():
    r = resolve_recipe("imagenet")
    assert (r.epochs, r.batch_size, r.lr, r.momentum, r.weight_decay, r.nesterov) == (90, 256, 0.1, 0.9, 1e-4, False)
    assert r.lr_milestones == [30, 60, 80] and r.warmup_epochs == 0 and r.schedule == "multistep"
    big = resolve_recipe("imagenet", batch_size=8192)
    assert big.lr == pytest.approx(3.2) and big.warmup_epochs == 5  # 0.1 x 8192 / 256, 5 warm-up epochs
    assert resolve_recipe("imagenet", batch_size=1024, lr=0.05).lr == 0.05  # an explicit --lr wins
    assert resolve_recipe("imagenet", epochs=9).lr_milestones == [3, 6, 8]  # the schedule shrinks with the run


def test_lr_schedule_divides_by_ten_at_each_milestone_and_warms_up_linearly():
    r = resolve_recipe("imagenet")
    steps = 100  # per epoch
    assert [lr_at(r, round(e * steps), steps) for e in (0, 29.99, 30, 59.9, 60, 80, 89.9)] == \
        pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.0001, 0.0001])
    big = resolve_recipe("imagenet", batch_size=1024)  # k = 4: from 0.1 to 0.4 over 5 epochs (Goyal et al. 2.2)
    assert [lr_at(big, round(e * steps), steps) for e in (0, 2.5, 5, 6, 30)] == \
        pytest.approx([0.1, 0.25, 0.4, 0.4, 0.04])


def test_imagenet_recipe_takes_a_real_step_on_the_full_imagenet_mgnet(tmp_path, capsys):
    """The whole command on a tiny 224x224 ImageFolder with ImageNet's 1,000 class folders (two hold an
    image): the 71,270,504-parameter model is built, trained one step (batch 2) and evaluated."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(1000):
            (tmp_path / "imagenet" / split / f"n{c:08d}").mkdir(parents=True)
        for c in (3, 997):
            im = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
            Image.fromarray(im).save(tmp_path / "imagenet" / split / f"n{c:08d}" / "a.JPEG", quality=90)
    out = tmp_path / "run"
    assert main(["compile", "specs/variants/mgnet-imagenet.mg", "--train", str(tmp_path / "imagenet"),
                 "--recipe", "imagenet", "--epochs", "1", "--batch-size", "2", "--workers", "0",
                 "--out", str(out)]) == 0
    assert "998 of 1000 class folders" in capsys.readouterr().err  # said, not silent
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["params"] == 71_270_504 and cfg["classes"] == 1000 and cfg["input_shape"] == [3, 224, 224]
    assert cfg["config"]["lr"] == pytest.approx(0.1 * 2 / 256) and cfg["data_plan"]["mode"] == "stream"
    m = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(m) == 1 and np.isfinite(m[0]["train_loss"]) and m[0]["test_top5"] in (0.0, 0.5, 1.0)

"""Streaming data (mgdsl/training/stream.py) and sharded metrics (mgdsl/training/metrics.py)."""
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mgdsl.training import metrics, stream
from mgdsl.training.stream import EVAL_CROP, EvalShard, ShardSampler

from launch import free_port


def make_folder(root, classes=("a", "b"), per_class=4, size=(20, 16), seed=0):
    """A tiny ImageFolder of random RGB PNGs."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / c / f"{k}.png")
    return root


# ------------------------------------------------------------------ decoding

def test_images_of_every_size_and_mode_come_out_with_the_specs_channels(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "a" / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (50, 17), dtype=np.uint8), "L").save(tmp_path / "a" / "grey.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 4), dtype=np.uint8), "RGBA").save(tmp_path / "a" / "rgba.png")
    pal = Image.fromarray(rng.integers(0, 4, (20, 20), dtype=np.uint8), "P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    pal.save(tmp_path / "b" / "pal.png", transparency=3)
    Image.fromarray(rng.integers(0, 65536, (33, 33), dtype=np.uint16)).save(tmp_path / "b" / "grey16.png")
    Image.fromarray(rng.integers(0, 2, (9, 11), dtype=np.uint8).astype(bool)).save(tmp_path / "b" / "bw.png")
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(tmp_path / "b" / "photo.jpg")
    for channels in (1, 3):
        ds = stream.image_folder(tmp_path, stream.pil_mode(channels))
        t = stream.eval_transform((channels, 24, 24))
        xs = [t(ds[i][0]) for i in range(len(ds))]
        assert len(xs) == 7 and {x.shape for x in xs} == {(channels, 24, 24)}
        assert sorted(ds.targets) == [0, 0, 0, 1, 1, 1, 1]


def test_conversions_keep_the_pixel_values():
    red = Image.new("RGB", (2, 2), (255, 0, 0))
    assert np.asarray(stream.to_mode(red, "L"))[0, 0] == 76  # ITU-R 601 luma of pure red
    grey16 = Image.fromarray(np.full((2, 2), 128 * 257, np.uint16))
    assert np.asarray(stream.to_mode(grey16, "L"))[0, 0] == 128  # scaled, not clipped to 255
    assert np.asarray(stream.to_mode(grey16, "RGB"))[0, 0].tolist() == [128, 128, 128]
    levels = np.arange(256, dtype=np.uint16).reshape(16, 16)
    ramp16 = Image.fromarray(levels * 257)  # the 16-bit image of every 8-bit level k: k * 257 (0xkkkk)
    assert np.array_equal(np.asarray(stream.to_mode(ramp16, "L")), levels.astype(np.uint8))  # back to k exactly
    pal = Image.fromarray(np.ones((2, 2), np.uint8), "P")
    pal.putpalette([0, 0, 0, 10, 200, 30])
    pal.info["transparency"] = 0
    assert np.asarray(stream.to_mode(pal, "RGB"))[0, 0].tolist() == [10, 200, 30]
    assert stream.to_mode(pal, "RGB").mode == "RGB"


def test_a_palette_with_per_entry_alpha_converts_without_a_warning(tmp_path):
    import warnings
    pal = Image.fromarray(np.array([[0, 1], [2, 3]], np.uint8), "P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    pal.save(tmp_path / "p.png", transparency=bytes([255, 0, 255, 128]))  # tRNS: one alpha per entry
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one PIL warning per image would flood a worker's log
        im = stream.load_image(str(tmp_path / "p.png"), "RGB")
    assert np.asarray(im).tolist() == [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [9, 9, 9]]]


def test_a_spec_with_two_channels_is_refused_with_a_hint():
    with pytest.raises(Exception, match="1 \\(grey\\), 3 \\(RGB\\) or 4"):
        stream.pil_mode(2)


def test_evaluation_crops_the_centre_after_the_reference_resize():
    a = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    x = stream.eval_transform((3, 224, 224))(Image.fromarray(a))
    assert round(224 / EVAL_CROP) == 256  # resize 256, crop 224: torchvision's reference
    torch.testing.assert_close(x, torch.from_numpy(a[16:240, 16:240]).permute(2, 0, 1).float() / 255)


# ------------------------------------------------------------------ folders

def test_train_and_val_folders_are_found_and_must_name_the_same_classes(tmp_path):
    make_folder(tmp_path / "imagenet" / "train", ("n1", "n2", "n3"), per_class=2)
    make_folder(tmp_path / "imagenet" / "val", ("n1", "n2", "n3"), per_class=1)
    tr, te, classes = stream.open_folders(tmp_path / "imagenet", None, 3)
    assert (len(tr), len(te), classes) == (6, 3, ["n1", "n2", "n3"])
    # a validation set without class n2 would shift n3's label from 2 to 1: refused
    make_folder(tmp_path / "bad" / "train", ("n1", "n2", "n3"), per_class=2)
    make_folder(tmp_path / "bad" / "val", ("n1", "n3"), per_class=1)
    with pytest.raises(Exception, match="different class folders.*n2"):
        stream.open_folders(tmp_path / "bad", None, 3)


def test_one_folder_is_split_80_20_without_overlap(tmp_path):
    make_folder(tmp_path, ("a", "b"), per_class=5)
    tr, te, _ = stream.open_folders(tmp_path, None, 3)
    assert (len(tr), len(te)) == (8, 2) and not set(tr.indices) & set(te.indices)


HELD_OUT = """import json, sys
from pathlib import Path
from mgdsl.training import stream
_, te, _ = stream.open_folders(Path(sys.argv[1]), None, 3)
print(json.dumps(sorted(te.dataset.samples[i][0] for i in te.indices)))
"""


def test_one_folder_holds_out_the_same_images_in_every_process_and_data_mode(tmp_path):
    """Without val/ or test/, every rank, every run, `eval` and the in-memory path hold out the same 20%:
    otherwise the test accuracy scores images the model trained on."""
    import json
    import subprocess
    import sys

    from mgdsl.training.data import load_dataset
    root = make_folder(tmp_path / "one", ("a", "b"), per_class=20, size=(8, 8))
    _, te, _ = stream.open_folders(root, None, 3)
    held = sorted(te.dataset.samples[i][0] for i in te.indices)
    assert len(held) == 8
    env = {**os.environ, "RANK": "1", "WORLD_SIZE": "2", "PYTHONPATH": os.getcwd()}
    other = subprocess.run([sys.executable, "-c", HELD_OUT, str(root)], env=env, capture_output=True, text=True,
                           check=True)
    assert json.loads(other.stdout) == held  # another process (rank 1, a later run, eval)
    memory = load_dataset(str(root), None, str(tmp_path))  # --data-mode memory
    pixels = {np.asarray(Image.open(p).convert("RGB")).tobytes() for p in held}
    assert {im.tobytes() for im in memory.x_test} == pixels
    assert not pixels & {im.tobytes() for im in memory.x_train}


# ------------------------------------------------------------------ samplers

@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), world=st.integers(1, 4), seed=st.integers(0, 5), epoch=st.integers(0, 3))
def test_ranks_read_disjoint_shards_that_cover_the_set(n, world, seed, epoch):
    shards = []
    for r in range(world):
        s = ShardSampler(n, world, r, seed)
        s.set_position(epoch)
        shards.append([i for i, _ in s])
    assert len({len(s) for s in shards}) == 1  # equal steps on every rank: DDP needs it
    flat = [i for s in shards for i in s]
    assert len(flat) == len(set(flat)) == n - n % world  # disjoint; at most world - 1 left out per epoch
    evals = [[i for i, _ in EvalShard(n, world, r)] for r in range(world)]
    assert sorted(i for e in evals for i in e) == list(range(n))  # every sample exactly once


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 40), world=st.sampled_from([1, 2, 4]), per_rank=st.integers(1, 3))
def test_a_global_batch_is_the_same_samples_for_any_number_of_ranks(n, world, per_rank):
    one = ShardSampler(n, 1, 0, 7)
    order = [i for i, _ in one]
    b = world * per_rank
    ranks = [[i for i, _ in ShardSampler(n, world, r, 7)] for r in range(world)]
    for step in range(len(ranks[0]) // per_rank):
        got = sorted(i for r in ranks for i in r[step * per_rank:(step + 1) * per_rank])
        assert got == sorted(order[step * b:(step + 1) * b])


def test_resuming_at_a_step_gives_the_remaining_batches_whatever_the_workers(tmp_path):
    make_folder(tmp_path, ("a", "b"), per_class=6, size=(20, 16))
    tr, te, classes = stream.open_folders(tmp_path, None, 3)

    def batches(workers, start):
        s = stream.stream(tr, te, len(classes), (3, 8, 8), batch_size=2, world=1, rank=0, seed=3, workers=workers,
                          pin=False)
        s.sampler.set_position(1, start)
        return [(x.clone(), y.clone()) for x, y in s.train]

    full = batches(0, 0)
    resumed = batches(2, 4)  # two steps done; different worker count
    assert len(full) == 4 and len(resumed) == 2
    for (x, y), (x2, y2) in zip(full[2:], resumed):
        assert torch.equal(x, x2) and torch.equal(y, y2)


def test_each_epoch_reshuffles_and_re_augments(tmp_path):
    make_folder(tmp_path, ("a", "b"), per_class=4)
    ds = stream.image_folder(tmp_path, "RGB")
    s = stream.stream(ds, ds, 2, (3, 8, 8), batch_size=8, world=1, rank=0, seed=0, workers=0, pin=False)
    s.sampler.set_position(0)
    (x0, y0), = list(s.train)
    order0 = [i for i, _ in s.sampler]
    s.sampler.set_position(1)
    (x1, y1), = list(s.train)
    assert order0 != [i for i, _ in s.sampler]
    # the same image in two epochs is cropped differently
    a, b = order0.index(0), [i for i, _ in s.sampler].index(0)
    assert not torch.equal(x0[a], x1[b])


def test_augmentation_leaves_the_callers_random_state_alone(tmp_path):
    make_folder(tmp_path, ("a",), per_class=2)
    ds = stream.Augmented(stream.image_folder(tmp_path, "RGB"), stream.train_transform((3, 8, 8), [0] * 3, [1] * 3))
    torch.manual_seed(5)
    before = torch.get_rng_state()
    ds[(0, 123)]
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(ds[(1, 9)][0], ds[(1, 9)][0]) and not torch.equal(ds[(1, 9)][0], ds[(1, 10)][0])


# ------------------------------------------------------------------ memory or stream

def test_mode_choice_follows_the_budget_and_the_users_flag():
    assert stream.choose_mode("auto", False, 100, 400).mode == "memory"
    assert stream.choose_mode("auto", False, 101, 400).mode == "stream"  # float32 is 4 bytes per value
    assert stream.choose_mode("auto", True, 1, 10**12).mode == "stream"
    assert stream.choose_mode("memory", True, 10**12, 1).mode == "memory"
    assert stream.choose_mode("stream", False, 1, 10**12).mode == "stream"


# ------------------------------------------------------------------ metrics

def test_top1_and_top5_count_the_right_guesses():
    logits = torch.tensor([[9., 8, 7, 6, 5, 4, 3],   # label 0: first guess
                           [9., 8, 7, 6, 5, 4, 3],   # label 4: fifth guess
                           [9., 8, 7, 6, 5, 4, 3]])  # label 5: sixth guess
    s = metrics.scores(metrics.score_sums(logits, torch.tensor([0, 4, 5])), classes=7)
    assert (s.top1, s.top5, s.n) == (pytest.approx(1 / 3), pytest.approx(2 / 3), 3)
    assert metrics.scores(metrics.score_sums(logits[:, :5], torch.tensor([0, 4, 1])), classes=5).top5 is None


def _sharded_eval(rank, world, port, n, result):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 6))
        model[0].running_mean += rank  # ranks' BN statistics differ after DDP training
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(n, 4, generator=g), torch.randint(0, 6, (n,), generator=g)
        idx = [i for i, _ in EvalShard(n, world, rank)]
        batches = [(x[idx[s:s + 2]], y[idx[s:s + 2]]) for s in range(0, len(idx), 2)]
        s = metrics.evaluate(model, batches, torch.device("cpu"), False, 6, world)
        if rank == 0:
            result.put((s.loss, s.top1, s.top5, s.n))
    finally:
        dist.destroy_process_group()


def test_sharded_evaluation_over_two_gloo_processes_equals_one_process():
    import torch.multiprocessing as mp
    n = 7  # not divisible by 2: no sample may be padded in or counted twice
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    mp.start_processes(_sharded_eval, args=(2, free_port(), n, q), nprocs=2, start_method="spawn")
    loss, top1, top5, count = q.get(timeout=30)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 6))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 4, generator=g), torch.randint(0, 6, (n,), generator=g)
    one = metrics.evaluate(model, [(x, y)], torch.device("cpu"), False, 6)
    assert count == n == one.n
    assert (loss, top1, top5) == pytest.approx((one.loss, one.top1, one.top5), rel=1e-6)


# ------------------------------------------------------------------ the CLI's streamed training

def _ramps(root, n=8, size=16):
    """An image folder whose every image brightens left to right: any crop keeps that, a mirror reverses it."""
    ramp = np.linspace(0, 255, size).astype(np.uint8)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for k in range(n // 2):
            im = np.broadcast_to(ramp[None, :, None], (size, size, 3)).copy()
            Image.fromarray(im).save(root / c / f"{k}.png")
    return root


def _mirrored_in_training(root, out, *flags):
    """For each training image the model saw in a one-epoch streamed CLI run: was it mirrored?"""
    from torch.nn.modules.module import register_module_forward_pre_hook

    from mgdsl.cli import main
    seen = []

    def spy(module, args):
        x = args[0] if args else None
        if module.training and isinstance(module, torch.nn.Conv2d) and module.in_channels == 3:
            cols = x.detach().float().mean((1, 2))  # the mean of each column
            seen.extend(bool(c[0] > c[-1]) for c in cols)
    handle = register_module_forward_pre_hook(spy)
    try:
        assert main(["compile", "specs/mgnet.mg", "-D", "width=4", "-D", "nu=1", "--train", str(root), "--epochs",
                     "1", "--batch-size", "2", "--workers", "0", "--data-mode", "stream", "--out", str(out),
                     *flags]) == 0
    finally:
        handle.remove()
    return seen


def test_streamed_training_mirrors_images_unless_no_flip(tmp_path):
    """`--no-flip` reaches the streamed training transform: no image is mirrored (a digit or a symbol
    mirrored is another class); by default about half are."""
    root = _ramps(tmp_path / "ramps", n=20)
    off = _mirrored_in_training(root, tmp_path / "off", "--no-flip")
    assert len(off) == 16 and not any(off)
    on = _mirrored_in_training(root, tmp_path / "on")
    assert len(on) == 16 and 0 < sum(on) < 16

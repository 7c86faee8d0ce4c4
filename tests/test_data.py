"""mgdsl/training/data.py: the numbers a user reads off a data set (split sizes, pixel scale, statistics)."""
import numpy as np
import torch

from mgdsl.training.data import DIGITS_NOTE, channel_stats, load_dataset, to_images


def test_digits_is_the_stated_stratified_split(tmp_path):
    d = load_dataset("digits", None, str(tmp_path))
    assert (len(d.x_train), len(d.x_test), d.classes) == (1437, 360, 10)
    assert "1,437 train / 360 test" in DIGITS_NOTE
    assert d.x_train.shape[1:] == (8, 8, 1) and d.x_train.dtype == np.uint8 and d.x_train.max() == 255
    per_class = np.bincount(d.y_test, minlength=10)
    assert per_class.min() >= 35 and per_class.max() <= 37  # stratified: 20% of each class's ~180 images


def test_images_are_scaled_to_0_1_and_normalised_per_channel():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 5, 4, 3), dtype=np.uint8)
    x[0, 0, 0] = (0, 255, 128)
    t = to_images(x, "cpu")
    assert t.shape == (6, 3, 5, 4) and t[0, 1, 0, 0].item() == 1.0 and t[0, 0, 0, 0].item() == 0.0
    mean, std = channel_stats(t)
    want = torch.from_numpy(x.astype(np.float64) / 255).permute(3, 0, 1, 2).reshape(3, -1)
    torch.testing.assert_close(mean.flatten().double(), want.mean(1), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(std.flatten().double(), want.std(1), rtol=1e-5, atol=1e-6)


def test_an_epoch_is_the_full_batches_and_drops_the_ragged_tail():
    """10 images in batches of 4: two batches of 4 each epoch (8 images trained, as the epoch line says), the
    last 2 left for another epoch's shuffle; a set smaller than a batch is one batch."""
    from mgdsl.training.data import in_memory_batches, steps_per_epoch
    x, y = torch.arange(10.0).view(10, 1, 1, 1), torch.arange(10)
    g = torch.Generator().manual_seed(0)
    sizes = [len(yb) for _, yb in in_memory_batches(x, y, batch_size=4, gen=g, augment_on=False)]
    assert sizes == [4, 4] and steps_per_epoch(10, 4) == 2
    assert [len(yb) for _, yb in in_memory_batches(x[:3], y[:3], batch_size=4, gen=g, augment_on=False)] == [3]

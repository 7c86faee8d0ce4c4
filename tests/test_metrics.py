"""training.metrics.evaluate, the one function that scores a model (during training and in `mgdsl eval`): its
loss, top-1, top-5 and count are checked against values computed by hand here, over several batches, with
and without flip test-time augmentation."""
import math

import pytest
import torch

from mgdsl.training.metrics import evaluate, scores

CLASSES = 7


class FirstRow(torch.nn.Module):
    """Logits = the first image row of channel 0 (so a mirrored image gives the reversed logits); a BN in it
    tells whether evaluation switched the model to eval mode."""

    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(CLASSES, affine=False)

    def forward(self, x):
        assert not self.training, "evaluate must score in eval mode"
        return self.bn(x[:, 0, 0, :CLASSES])  # running stats 0 / 1 and eps: the row, scaled by 1/sqrt(1+eps)


def _images(rows):
    x = torch.zeros(len(rows), 1, 2, 2 * CLASSES)  # the mirror's first 7 columns are the row's last 7
    x[:, 0, 0, :] = torch.tensor(rows, dtype=torch.float32)
    return x


# label 0 is the first guess; label 2 the third; label 6 the sixth (outside the top 5)
ROWS = [[9, 1, 2, 3, 4, 5, 0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75],
        [5, 9, 7, 1, 2, 3, 0, 6.5, 0.7, 1.25, 2.5, 3.5, 0.75, 4.25],
        [9, 8, 7, 6, 5, 4, 3, 13, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5]]
LABELS = [0, 2, 6]


def _ce(row, label):
    z = [v / math.sqrt(1 + 1e-5) for v in row]
    return math.log(sum(math.exp(v) for v in z[:CLASSES])) - z[label]


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_loss_top1_top5_and_count_over_batches_are_the_hand_computed_ones(batch):
    x, y = _images(ROWS), torch.tensor(LABELS)
    model = FirstRow().train()
    sc = evaluate(model, ((x[s:s + batch], y[s:s + batch]) for s in range(0, 3, batch)), torch.device("cpu"),
                  False, CLASSES)
    assert sc.n == 3 and sc.top1 == pytest.approx(1 / 3) and sc.top5 == pytest.approx(2 / 3)
    assert sc.loss == pytest.approx(sum(_ce(r, k) for r, k in zip(ROWS, LABELS)) / 3, rel=1e-6)
    assert not model.training


def test_flip_tta_scores_the_mean_of_the_logits_of_an_image_and_its_mirror():
    x, y = _images(ROWS), torch.tensor(LABELS)
    sc = evaluate(FirstRow(), [(x, y)], torch.device("cpu"), False, CLASSES, tta=True)
    mean = [[(r[j] + r[2 * CLASSES - 1 - j]) / 2 for j in range(CLASSES)] for r in ROWS]  # mirror column j: 13 - j
    assert all(len(set(m)) == CLASSES for m in mean)  # no ties: the order of guesses is defined
    top1 = sum(max(range(CLASSES), key=lambda j: m[j]) == k for m, k in zip(mean, LABELS)) / 3
    assert top1 == 1.0  # without TTA it is 1 / 3: ignoring the mirror fails
    assert sc.loss == pytest.approx(sum(_ce(m, k) for m, k in zip(mean, LABELS)) / 3, rel=1e-6)
    assert sc.top1 == pytest.approx(top1) and sc.n == 3


def test_top5_is_none_with_five_classes_or_fewer_and_an_empty_set_counts_zero():
    assert scores(torch.tensor([3.0, 1.0, 2.0, 2.0], dtype=torch.float64), 5).top5 is None
    s = scores(torch.tensor([3.0, 1.0, 2.0, 2.0], dtype=torch.float64), 6)
    assert (s.loss, s.top1, s.top5, s.n) == (1.5, 0.5, 1.0, 2)
    empty = scores(torch.zeros(4, dtype=torch.float64), 10)
    assert (empty.loss, empty.top1, empty.n) == (0.0, 0.0, 0)


def test_evaluation_is_in_full_precision_unless_amp_is_asked_for():
    # a linear layer under autocast runs in bfloat16 on CPU: its logits (and so the loss) are rounded
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, CLASSES))
    x, y = torch.randn(16, 3, 4, 4), torch.randint(0, CLASSES, (16,))
    with torch.no_grad():
        exact = torch.nn.functional.cross_entropy(model(x), y).item()
    plain = evaluate(model, [(x, y)], torch.device("cpu"), False, CLASSES)
    amp = evaluate(model, [(x, y)], torch.device("cpu"), True, CLASSES)
    assert plain.loss == pytest.approx(exact, rel=1e-6)
    assert amp.loss != pytest.approx(exact, rel=1e-6)  # bfloat16 keeps 3 significant digits


def test_one_image_scores_its_own_loss_and_hits_not_a_fraction_of_them():
    # a set of one image: its loss and a top-1 of 1.0 (a count floored at anything but 1 divides them)
    x, y = _images(ROWS[:1]), torch.tensor(LABELS[:1])
    sc = evaluate(FirstRow(), [(x, y)], torch.device("cpu"), False, CLASSES)
    assert (sc.n, sc.top1, sc.top5) == (1, 1.0, 1.0)
    assert sc.loss == pytest.approx(_ce(ROWS[0], LABELS[0]), abs=1e-6)  # a small loss: float32 to 1e-7


def test_the_sums_over_many_batches_are_accumulated_in_float64():
    # 3000 one-image batches: each batch's loss is a float32 number, their mean is exact in float64 but
    # drifts by about 1e-6 when added up in float32 (a large test set scored batch by batch)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, CLASSES))
    x, y = torch.randn(3000, 3, 4, 4), torch.randint(0, CLASSES, (3000,))
    with torch.no_grad():  # float32, one per image, computed batch by batch as evaluation does
        each = torch.stack([torch.nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]) for i in range(3000)])
    sc = evaluate(model, [(x[i:i + 1], y[i:i + 1]) for i in range(3000)], torch.device("cpu"), False, CLASSES)
    assert sc.n == 3000
    assert sc.loss == pytest.approx(each.double().mean().item(), rel=1e-12, abs=0)


@pytest.mark.parametrize("batch", [1, 3])
def test_the_confusion_matrix_is_the_hand_counted_one_and_its_diagonal_is_top1(batch):
    # ROWS' first guesses are classes 0, 1, 0 for labels 0, 2, 6: one hit, class 2 taken for 1, class 6 for 0
    x, y = _images(ROWS), torch.tensor(LABELS)
    sc = evaluate(FirstRow(), ((x[s:s + batch], y[s:s + batch]) for s in range(0, 3, batch)), torch.device("cpu"),
                  False, CLASSES, confusion=True)
    want = [[0] * CLASSES for _ in range(CLASSES)]
    want[0][0] = want[2][1] = want[6][0] = 1
    assert sc.confusion == want
    assert evaluate(FirstRow(), [(x, y)], torch.device("cpu"), False, CLASSES).confusion is None  # asked for only


def test_with_tta_and_with_tied_logits_the_confusion_diagonal_counts_what_top1_counts():
    # TTA: the mean logits' first guesses (all three right, see the TTA test above); then rows whose two largest
    # logits tie: whichever the tie goes to, the matrix and top-1 must agree image by image
    x, y = _images(ROWS), torch.tensor(LABELS)
    sc = evaluate(FirstRow(), [(x, y)], torch.device("cpu"), False, CLASSES, tta=True, confusion=True)
    assert [sc.confusion[k][k] for k in LABELS] == [1, 1, 1] and sum(map(sum, sc.confusion)) == 3
    ties = [[5, 5, 1, 0, 0, 0, 0] + [0] * CLASSES, [0, 2, 2, 2, 0, 0, 0] + [0] * CLASSES] * 2
    xt, yt = _images(ties), torch.tensor([0, 2, 1, 3])
    sc = evaluate(FirstRow(), [(xt, yt)], torch.device("cpu"), False, CLASSES, confusion=True)
    assert sum(sc.confusion[k][k] for k in range(CLASSES)) == round(sc.top1 * sc.n)
    assert [sum(row) for row in sc.confusion] == [1, 1, 1, 1, 0, 0, 0]  # each image once, in its label's row

"""A training run as a classifier: its model with the preprocessing it was trained with (mgdsl.load_run), and
the images `mgdsl predict` reads (files, folders streamed in batches, .npz arrays).

Images reach the model as `mgdsl eval` gives them: uint8 0..255 to float [0, 1], then (x - mean) / std with
the training set's statistics saved in the run, and the mean of the logits of each image and its mirror when
the run's recipe used flip test-time augmentation. An image of the run's own size goes in as it is; one of
another size is resized (shorter side, torchvision's Resize) and centre-cropped, as the run's own evaluation
did for streamed image folders (stream.eval_transform).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .data import DataError

WEIGHTS = {"last": "model.pt", "best": "best.pt"}  # model.pt: the last epoch's weights, what `mgdsl eval` scores
CHANNEL_NAMES = {1: "grey", 2: "grey + alpha", 3: "RGB", 4: "RGBA"}


@dataclass
class Preprocess:
    """Raw uint8 images (N x H x W x C arrays or PIL images) to the normalised float N x C x H x W the model takes."""
    input_shape: tuple[int, int, int]  # C x H x W
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int  # the shorter side an image of another size is resized to before its centre crop
    resize_all: bool  # the run evaluated every image through Resize + CenterCrop (a streamed run)

    def __call__(self, images) -> torch.Tensor:
        from .data import to_images
        from .loop import standardise
        if isinstance(images, torch.Tensor):
            images = images.cpu().numpy()
        if isinstance(images, np.ndarray):
            x = images[None] if images.ndim == 3 else images
            self.check_array(x, "images")
            if x.shape[1:3] == self.input_shape[1:] and not self.resize_all:  # exactly as `mgdsl eval`
                return standardise(to_images(np.require(x, requirements="CW"), "cpu"), self.stats)
            images = list(x)
        images = [images] if not isinstance(images, (list, tuple)) else images
        return torch.stack([self.one(im, f"image {i}") for i, im in enumerate(images)])

    @property
    def stats(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    def check_array(self, x: np.ndarray, where: str) -> None:
        """uint8 N x H x W x C with the run's channel count, else a one-line error naming `where`."""
        c = self.input_shape[0]
        if x.dtype != np.uint8:
            raise DataError(f"{where}: images are {x.dtype}, expected uint8 0..255 (N x H x W x C)")
        if x.ndim != 4 or x.shape[-1] != c:
            raise DataError(f"{where}: images have shape {tuple(x.shape)}, expected N x H x W x {c} "
                            f"({CHANNEL_NAMES.get(c, c)}, the run's channels)")
        if len(x) == 0:
            raise DataError(f"{where}: no images (0 in the array)")

    def one(self, im, where: str) -> torch.Tensor:
        """One image (PIL, or an H x W x C uint8 array) to a normalised C x H x W float tensor."""
        from torchvision.transforms import v2

        from .data import to_images
        from .loop import standardise
        from .stream import eval_transform, pil_mode, to_mode
        c, h, w = self.input_shape
        if not isinstance(im, np.ndarray):
            n = image_channels(im)
            if n != c:
                raise DataError(f"{where}: {n} channels ({CHANNEL_NAMES.get(n, im.mode)}), but the model takes {c} "
                                f"({CHANNEL_NAMES.get(c, c)})")
            im = np.array(to_mode(im, pil_mode(c)))
            im = im[..., None] if im.ndim == 2 else im
        self.check_array(im[None], where)
        if im.shape[:2] == (h, w) and not self.resize_all:
            return standardise(to_images(np.require(im[None], requirements="CW"), "cpu"), self.stats)[0]
        if self.resize_all:  # the run's own evaluation transform, step for step
            t = eval_transform(self.input_shape, self.mean, self.std)
        else:
            t = v2.Compose([v2.ToImage(), v2.Resize(self.resize, antialias=True), v2.CenterCrop((h, w)),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(self.mean), list(self.std))])
        return t(im)


def image_channels(im) -> int:
    """How many channels a PIL image holds (a palette counts as RGB, or RGBA with transparency)."""
    if im.mode == "P":
        return 4 if "transparency" in im.info else 3
    if im.mode.startswith("I") or im.mode in ("F", "1"):
        return 1
    return len(im.getbands())


@dataclass
class Predictor:
    """A trained run as a classifier: predictor(images) -> class probabilities, .predict(images) -> class names.

    .model is the trained nn.Module in eval mode; it takes what .preprocess makes of raw images."""
    model: torch.nn.Module
    preprocess: Preprocess
    classes: list[str]  # names in label order
    tta: bool  # the mean of the logits of each image and its mirror, as the run was scored
    run: Path
    weights: Path

    def logits(self, images) -> torch.Tensor:
        """The model's logits for raw images, with the run's normalisation and test-time flips."""
        return self.scores(self.preprocess(images))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of preprocessed images: the mean over each image and its mirror if the run used flip TTA."""
        with torch.no_grad():
            out = self.model(x).float()
            if self.tta:
                out = (out + self.model(x.flip(3)).float()) / 2
        return out

    def __call__(self, images) -> torch.Tensor:
        """Class probabilities, N x K (softmax of the logits)."""
        return torch.softmax(self.logits(images), 1)

    def predict(self, images) -> list[str]:
        """The most likely class name of each image."""
        return [self.classes[i] for i in self.logits(images).argmax(1).tolist()]

    def top_k(self, images, k: int = 5) -> list[list[tuple[str, float]]]:
        """The k most likely classes of each image, with their probabilities."""
        p, i = self(images).topk(min(k, len(self.classes)), 1)
        return [[(self.classes[j], float(q)) for j, q in zip(ij, pj)] for ij, pj in zip(i.tolist(), p.tolist())]


def weights_path(run: Path, weights: str) -> Path:
    """best / last (model.pt), or a .pt file."""
    p = run / WEIGHTS[weights] if weights in WEIGHTS else Path(weights)
    if not p.is_file():
        raise DataError(f"{p}: no such weights file" + (f" ({weights} of run {run})" if weights in WEIGHTS else ""))
    return p


def preprocess_of(rec: dict) -> Preprocess:
    """The preprocessing a run's config.json says its images had."""
    from .stream import EVAL_CROP
    if not rec.get("normalize") or not rec.get("input_shape"):
        raise DataError("the run's config.json has no normalize or input_shape (made by an older mgdsl?)")
    c, h, w = rec["input_shape"]
    streamed = (rec.get("data_plan") or {}).get("mode") == "stream"
    return Preprocess((c, h, w), tuple(rec["normalize"]["mean"]), tuple(rec["normalize"]["std"]),
                      round(max(h, w) / EVAL_CROP) if streamed else max(h, w), streamed)


def class_names(rec: dict) -> list[str]:
    """The run's class names (saved from the data), or 0..K-1 where the data had none."""
    names = rec.get("class_names")
    return list(names) if names and len(names) == rec["classes"] else [str(k) for k in range(rec["classes"])]


def load_run(run_dir, weights: str = "last") -> Predictor:
    """The trained model of a run folder, built from its own spec text, -D values and data adaptation, with its
    preprocessing; weights "last" (model.pt, what `mgdsl eval` scores), "best" (best.pt) or a .pt file."""
    from ..lowering import lower_ir
    from . import load_run as read_config
    from . import load_state, run_ir
    from .recipes import Config
    run = Path(run_dir)
    if run.exists() and not run.is_dir():  # `mgdsl predict photo.png ...`: the run folder left out
        raise DataError(f"{run_dir}: a file, not a run folder", "the run folder comes first: RUN_DIR INPUT...")
    if not run.is_dir():
        raise DataError(f"{run_dir}: no such run folder")
    rec = read_config(str(run))
    wpath = weights_path(run, weights)
    ir = run_ir(rec)
    model = lower_ir(ir)
    load_state(model, wpath, ir.name)
    model.eval()
    tta = bool(Config.from_dict(rec.get("config", {})).tta)
    return Predictor(model, preprocess_of(rec), class_names(rec), tta, run, wpath)


# ------------------------------------------------------------------ inputs of `mgdsl predict`

def image_extensions() -> tuple[str, ...]:
    from torchvision.datasets.folder import IMG_EXTENSIONS
    return IMG_EXTENSIONS


@dataclass
class Input:
    """One argument of `mgdsl predict`: image files (one, or a folder's) or an .npz array."""
    files: list[Path] | None = None
    npz: Path | None = None


def open_inputs(args: list[str], channels: int) -> list[Input]:
    """Every input named, checked before anything is predicted: files exist and are images (their headers
    read, not their pixels) with the run's channel count; a folder holds images; an .npz holds x."""
    out = []
    for a in args:
        p = Path(a)
        if not p.exists():
            raise DataError(f"{a}: no such file or folder")
        if p.is_dir():
            exts = image_extensions()
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
            if not files:
                raise DataError(f"{a}: an empty folder (no {', '.join(e for e in exts if e in ('.png', '.jpg'))} "
                                "or other image files in it)")
        elif p.suffix == ".npz":
            npz_images(p, channels, header_only=True)
            out.append(Input(npz=p))
            continue
        else:
            files = [p]
        for f in files:
            check_image(f, channels)
        out.append(Input(files=files))
    return out


def check_image(path: Path, channels: int) -> None:
    """Open an image file's header: an error naming it unless it is an image with `channels` channels."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            n, mode = image_channels(im), im.mode
    except Exception as e:
        raise DataError(f"{path}: not an image file ({type(e).__name__})") from None
    if n != channels:
        raise DataError(f"{path}: {n} channels ({CHANNEL_NAMES.get(n, mode)}), but the model takes {channels} "
                        f"({CHANNEL_NAMES.get(channels, channels)})")


def npz_images(p: Path, channels: int, header_only: bool = False):
    """The x array of an .npz (uint8 N x H x W x C with the run's channels), or an error naming the file."""
    try:
        z = np.load(p, allow_pickle=False)
        if "x" not in z.files:
            raise DataError(f"{p}: no key x (the images, uint8 N x H x W x C); it has "
                            f"{', '.join(z.files) or 'nothing'}")
        x = z["x"]
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{p}: not a readable .npz file ({type(e).__name__})") from None
    c = channels
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != c or len(x) == 0:
        raise DataError(f"{p}: x is {x.dtype} of shape {tuple(x.shape)}, expected uint8 N x H x W x {c} with N > 0 "
                        f"({CHANNEL_NAMES.get(c, c)}, the run's channels)")
    return None if header_only else x


def batches(inputs: list[Input], channels: int, batch_size: int) -> Iterator[tuple[list[str], list]]:
    """(names, images) batches: image files decoded one batch at a time (a folder larger than memory works)."""
    from .stream import load_image, pil_mode
    mode = pil_mode(channels)
    for inp in inputs:
        if inp.npz is not None:
            x = npz_images(inp.npz, channels)
            for s in range(0, len(x), batch_size):
                yield [f"{inp.npz}[{i}]" for i in range(s, min(s + batch_size, len(x)))], x[s:s + batch_size]
            continue
        for s in range(0, len(inp.files), batch_size):
            chunk = inp.files[s:s + batch_size]
            yield [str(f) for f in chunk], [load_image(str(f), mode) for f in chunk]


def predict_inputs(p: Predictor, inputs: list[Input], top_k: int, batch_size: int,
                   resized: list[int] | None = None) -> Iterator[dict]:
    """One record per image: its name and its top-k classes with their label and probability; resized[0]
    counts the images that were not of the run's size (and so were resized, unlike the run's own)."""
    c, h, w = p.preprocess.input_shape
    for names, images in batches(inputs, c, batch_size):
        if isinstance(images, np.ndarray):
            n_other = len(images) if images.shape[1:3] != (h, w) else 0
            x = p.preprocess(images)
        else:
            n_other = sum(im.size != (w, h) for im in images)
            x = torch.stack([p.preprocess.one(im, n) for im, n in zip(images, names)])
        if resized is not None and not p.preprocess.resize_all:  # a streamed run resizes every image, as it did
            resized[0] += n_other
        top, idx = torch.softmax(p.scores(x), 1).topk(min(top_k, len(p.classes)), 1)
        for name, pi, ii in zip(names, top.tolist(), idx.tolist()):
            yield {"input": name, "top": [{"class": p.classes[j], "label": j, "prob": q} for j, q in zip(ii, pi)]}

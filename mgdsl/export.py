"""Take a lowered spec out of mgdsl: standalone PyTorch source (OUT.py), its weights (OUT.pt) and ONNX (OUT.onnx).

The source is read off the lowered module itself (its submodules, the generated forward, the helper classes of
lowering.py), so it cannot describe another network than `mgdsl.load` builds; its `state_dict` keys are the same."""
from __future__ import annotations

import inspect
import json
import keyword
import pprint
import re
from pathlib import Path

import torch
from torch import nn

from . import __version__, lowering as L
from .diagnostics import Diagnostic, SpecError, install_hint
from .files import atomic_write
from .ir import IR
from .prims import LowerCtx

FORMATS = {"all": ("py", "onnx"), "py": ("py",), "onnx": ("onnx",)}
ONNX_OPSET = 18


def _error(message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(message, None, hint)])


# ------------------------------------------------------------------ weights and training runs

def weights_file(weights: str) -> Path:
    """FILE, or RUN_DIR/model.pt (the best weights of a training run)."""
    p = Path(weights)
    if p.is_dir() and not (p / "model.pt").is_file():
        raise _error(f"{p / 'model.pt'}: no such weights file (in the folder {weights})",
                     "pass a state_dict (model.pt) or a run folder that has one")
    if p.is_dir():
        p = p / "model.pt"
    if not p.is_file():
        raise _error(f"--weights {weights}: no such file", "pass a state_dict (model.pt) or a run folder")
    return p


def run_config(weights: str | None) -> dict:
    """The config.json of the run the weights come from ({} if there is none)."""
    if not weights:
        return {}
    cfg = weights_file(weights).parent / "config.json"
    try:
        return json.loads(cfg.read_text()) if cfg.is_file() else {}
    except (OSError, ValueError) as e:
        raise _error(f"{cfg}: not a readable run config ({e})") from None


def load_weights(model: nn.Module, weights: str) -> None:
    """Load a state_dict into the lowered model; a mismatch is the user's error, not ours."""
    path = weights_file(weights)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise _error(f"{path}: not a PyTorch state_dict ({type(e).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # last.pt of a run: model, optimizer, scheduler
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise _error(f"{path} does not fit this model: {str(e).splitlines()[0]}",
                     "pass the same spec and -D values as in training") from None


# ------------------------------------------------------------------ module -> constructor source

# helper classes and functions of lowering.py that an exported model may need, with what they need themselves
HELPERS = {
    L.Scale: (), L.GlobalAvgPool: (), L.Split: (), L.Delta: (), L.SubId: (),
    L.Stencil: ("KERNELS", "PAD_MODES"), L.VarStencil: (), L.Deconv: (),
    L.Jacobi: (L.VarStencil, L.Stencil, L.probe_diagonal), L.Inverse: (L.probe_matrix,),
    L.RedBlack: (L.Jacobi,),
    L.assemble: (L.VarStencil,), L.probe_diagonal: (), L.probe_matrix: (),
}


# names the generated code itself uses, the helpers it copies in among them
RESERVED = {"nn", "torch", "F", "self", "super", "type", "m", "x", "KERNELS", "PAD_MODES"} | {h.__name__ for h in HELPERS}


def _py_name(text: str) -> str:
    name = re.sub(r"\W", "_", text)
    if not name or name[0].isdigit() or keyword.iskeyword(name) or name in RESERVED:
        name = "_" + name
    return name


def class_name(model_name: str) -> str:
    """mgnet -> Mgnet, mgnet_256_256_pi1 -> Mgnet256256Pi1: the model's name as a Python class name."""
    return _py_name("".join(p[:1].upper() + p[1:] for p in re.split(r"[_\W]+", model_name) if p) or "Model")


class _Writer:
    """Constructor lines for the instances of one lowered model, in the order lowering built them."""

    def __init__(self, ir: IR, model: nn.Module):
        self.ir, self.model = ir, model
        self.var: dict[int, str] = {}  # id(module) -> local variable that holds it
        self.helpers: list = []
        self.lines: list[str] = []

    def need(self, obj) -> None:
        if obj in self.helpers or isinstance(obj, str) and obj in self.helpers:
            return
        for dep in HELPERS.get(obj, ()):
            self.need(dep)
        self.helpers.append(obj)

    def expr(self, m: nn.Module, layer=None) -> str:
        """Python that constructs `m` (or the variable that already holds it: shared parameters)."""
        if id(m) in self.var:
            return self.var[id(m)]
        t = type(m)
        if t is nn.Sequential:
            return "nn.Sequential(" + ", ".join(self.expr(c) for c in m) + ")"
        if t is nn.Conv2d:
            args = [str(m.in_channels), str(m.out_channels), str(m.kernel_size[0])]
            for key, val, default in (("stride", m.stride[0], 1), ("padding", m.padding[0], 0),
                                      ("groups", m.groups, 1), ("bias", m.bias is not None, True),
                                      ("padding_mode", m.padding_mode, "zeros")):
                if val != default:
                    args.append(f"{key}={val!r}")
            return f"nn.Conv2d({', '.join(args)})"
        if t in (nn.BatchNorm1d, nn.BatchNorm2d):
            extra = "".join(f", {k}={getattr(m, k)!r}" for k, d in (("eps", 1e-5), ("momentum", 0.1))
                            if getattr(m, k) != d)
            return f"nn.{t.__name__}({m.num_features}{extra})"
        if t is nn.Linear:
            return f"nn.Linear({m.in_features}, {m.out_features}" + ("" if m.bias is not None else ", bias=False") + ")"
        if t in (nn.ReLU, nn.Identity):
            return f"nn.{t.__name__}()"
        if t in (nn.MaxPool2d, nn.AvgPool2d):
            return f"nn.{t.__name__}({m.kernel_size!r}, {m.stride!r}, padding={m.padding!r}, ceil_mode={m.ceil_mode!r})"
        self.need(t)
        if t in (L.GlobalAvgPool, L.Split, L.Delta):
            return f"{t.__name__}()"
        if t is L.Scale:
            return f"Scale({float(m.weight.detach())!r})"
        if t is L.SubId:
            return f"SubId({self.expr(m.chi)})"
        if t is L.Deconv:
            return (f"Deconv({m.in_channels}, {m.out_channels}, {m.kernel_size[0]}, {m.padding[0]}, {m.groups}, "
                    f"{m.bias is not None}, {m.out_size!r})")
        if t is L.Stencil:
            return (f"Stencil({_stencil_name(m)!r}, {m.channels}, stride={m.stride}, transposed={m.transposed}, "
                    f"pad={_pad_name(m.pad)!r}, out_size={m.out_size!r})")
        if t in (L.Jacobi, L.RedBlack, L.Inverse) and layer is not None:
            a = self.ir.instances[layer.ref]
            size = (a.in_ty.height, a.in_ty.width)
            ref = self.var[id(self.model.instance(layer.ref))]
            if t in (L.Jacobi, L.RedBlack):
                return f"{t.__name__}({ref}, {a.in_ty.channels}, {size!r}, {layer.omega!r})"
            return f"Inverse({ref}, {a.in_ty.channels}, {size!r})"
        raise _error(f"mgdsl export cannot write a {t.__name__} module yet",
                     "export the spec with --format onnx, or use mgdsl.load in Python")

    def instance(self, label: str) -> None:
        inst = self.ir.instances[label]
        m = self.model.instance(label)
        var = _py_name(inst.name + "".join(f"_{i}" for i in inst.index))
        while var in self.var.values():
            var += "_"
        if id(m) in self.var:  # an alias: `Ar[l] = A[l]` is A[l]'s very module
            rhs = self.var[id(m)]
        elif type(m) is L.VarStencil:  # a fixed channel-wise composition, assembled into one exact stencil
            self.need(L.assemble)
            ctx = LowerCtx(_Built(self.model), self.ir.instances)
            parts = [self.expr(L._layer_module(lay, ctx)) for lay in inst.layers]
            t = inst.in_ty
            rhs = f"assemble(nn.Sequential({', '.join(parts)}), {t.channels}, ({t.height}, {t.width}))"
        elif type(m) is nn.Sequential:
            rhs = "nn.Sequential(" + ", ".join(self.expr(c, lay) for c, lay in zip(m, inst.layers)) + ")"
        else:
            rhs = self.expr(m, inst.layers[0])
        self.lines.append(f"{var} = {rhs}")
        self.var.setdefault(id(m), var)

    def helper_source(self) -> str:
        parts = []
        for h in self.helpers:
            if isinstance(h, str):
                parts.append(f"{h} = {pprint.pformat(getattr(L, h), width=110, sort_dicts=False)}")
            else:
                parts.append(inspect.getsource(h).rstrip())
        return "\n\n\n".join(parts)


class _Built(dict):
    """label -> module of the lowered model, as lowering's layer builder looks references up."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def __missing__(self, label):
        return self.model.instance(label)


def _stencil_name(m) -> str:
    k = m.kernel[0, 0].double()
    for name, table in L.KERNELS.items():
        if torch.allclose(k, torch.tensor(table, dtype=torch.float64)):
            return name
    raise _error("a fixed stencil that is not one of the paper's kernels")


def _pad_name(mode: str) -> str:
    return {v: k for k, v in L.PAD_MODES.items()}[mode]


def _tree(entries: list[tuple[tuple[str, ...], str]], depth: int) -> str:
    """Nested nn.ModuleDict literal for indexed instances: (("1", "2"), "B_1_2") -> {"1": {"2": B_1_2}}."""
    groups: dict[str, list] = {}
    for index, var in entries:
        groups.setdefault(index[0], []).append((index[1:], var))
    inner = []
    for key, rest in groups.items():
        value = rest[0][1] if rest[0][0] == () else _tree(rest, depth + 1)
        inner.append(f"{json.dumps(key)}: {value}")
    return "nn.ModuleDict({" + ", ".join(inner) + "})"


def _tree_lines(entries: list[tuple[tuple[str, ...], str]]) -> str:
    """A long nested ModuleDict with one line per grid."""
    groups: dict[str, list] = {}
    for index, var in entries:
        groups.setdefault(index[0], []).append((index[1:], var))
    rows = [f"    {json.dumps(k)}: {_tree(rest, 1)}," for k, rest in groups.items()]
    return "nn.ModuleDict({\n" + "\n".join(rows) + "\n})"


def _paper_names(ir: IR, code: str) -> str:
    """Rename the generated forward's tagged values after the paper's states: v17 -> u_2_1 (u^{2,1})."""
    names: dict[str, str] = {}
    for nid, n in enumerate(ir.nodes):
        tag = getattr(n, "tag", None)
        if not tag:
            continue
        state, level, phase, step = tag[0], tag[1], tag[2], tag[3]
        name = f"{state}_{level}_{step}" + ("" if phase == "down" else f"_{phase}")
        if name.isidentifier() and not keyword.iskeyword(name) and name not in RESERVED | set(names.values()):
            names[f"v{nid}"] = name
    # string literals (getattr(self, "A'v1"): an operator's own name) are kept whole; so is self.v2
    return re.sub(r"\"[^\"\n]*\"|'[^'\n]*'|(?<![.\w])v\d+\b", lambda m: names.get(m.group(0), m.group(0)), code)


def source(ir: IR, model: nn.Module, note: str = "") -> str:
    """The standalone PyTorch source of a lowered model: imports torch only, no-argument constructor."""
    w = _Writer(ir, model)
    for label in ir.instances:
        w.instance(label)
    order: dict[str, list] = {}
    for label, inst in ir.instances.items():
        order.setdefault(inst.name, []).append((tuple(map(str, inst.index)), w.var[id(model.instance(label))]))
    body = list(w.lines)
    for name, entries in order.items():
        value = entries[0][1] if entries[0][0] == () else _tree(entries, 0)
        if len(value) > 100 and value.startswith("nn.ModuleDict({") and any(len(e[0]) > 1 for e in entries):
            value = _tree_lines(entries)
        target = L.attribute(name)
        body.append(f"{target} = {value}" if target.startswith("self.") else f"setattr(self, {name!r}, {value})")
    forward = _paper_names(ir, model.code)
    cls = class_name(ir.name)
    params = ", ".join(f"{k}={v}" for k, v in sorted(ir.params.items()))
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    doc = (f'"""{ir.name}: generated by mgdsl {__version__} from {Path(ir.path).name}'
           + (f" ({params})" if params else "") + ".\n\n"
           f"Standalone PyTorch (imports torch only): {cls}() builds the network with {total:,} trained parameters;\n"
           f"input {tuple(ir.input_ty.shape)} per image, output {tuple(ir.output_ty.shape)}. Its state_dict keys are "
           f"mgdsl.load's, so\n    model = {cls}(); model.load_state_dict(torch.load(\"weights.pt\"))\n"
           f"loads weights saved from mgdsl. The forward names values as the paper does: u_l_i is u^{{l,i}}.\n"
           + (f"\n{note}\n" if note else "") + '"""')
    init = "\n".join("\n".join(f"        {part}" for part in line.splitlines()) for line in body)
    helpers = w.helper_source()
    return (f"{doc}\nfrom __future__ import annotations\n\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\n"
            + (f"{helpers}\n\n\n" if helpers else "")
            + f"class {cls}(nn.Module):\n"
            f'    """{ir.name} as mgdsl lowers it: one submodule per operator instance, named as in the spec."""\n\n'
            f"    input_shape = {tuple(ir.input_ty.shape)!r}\n    output_shape = {tuple(ir.output_ty.shape)!r}\n\n"
            f"    def __init__(self):\n        super().__init__()\n{init}\n"
            f"        for m in self.modules():  # mgdsl's initialisation of trained convolutions\n"
            f"            if type(m) is nn.Conv2d:\n"
            f"                nn.init.kaiming_normal_(m.weight, mode=\"fan_out\", nonlinearity=\"relu\")\n\n"
            + "\n".join("    " + line if line else "" for line in forward.splitlines()) + "\n")


# ------------------------------------------------------------------ writing the files

class WithPreprocessing(nn.Module):
    """A trained network with its run's preprocessing: uint8 images N x H x W x C (as numpy and PIL hold them)
    in, logits out; float [0, 1], (x - mean) / std per channel, and the mean over the mirror image if tta."""

    def __init__(self, net: nn.Module, mean, std, tta: bool = False, size: tuple[int, int] | None = None):
        super().__init__()
        self.net, self.tta, self.hwc = net, tta, None if size is None else (*size, len(mean))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, images):
        if images.dtype != torch.uint8 or images.dim() != 4 or (self.hwc and tuple(images.shape[1:]) != self.hwc):
            want = "N x {} x {} x {}".format(*self.hwc) if self.hwc else "N x H x W x C"
            raise ValueError(f"expected uint8 images {want}, got {images.dtype} {tuple(images.shape)}: "
                             "convert, resize and centre-crop them first")
        x = images.permute(0, 3, 1, 2).float().div(255)
        x = (x - self.mean) / self.std
        y = self.net(x)
        if self.tta:
            y = (y + self.net(x.flip(3))) / 2
        return y


def preprocessing(cfg: dict) -> dict | None:
    """mean, std, tta and class names of a run's config.json (None without a run's normalisation)."""
    from .training.predict import class_names
    norm = cfg.get("normalize")
    if not norm or not cfg.get("classes"):
        return None
    return {"mean": [float(v) for v in norm["mean"]], "std": [float(v) for v in norm["std"]],
            "tta": bool((cfg.get("config") or {}).get("tta")), "classes": class_names(cfg)}


def _preprocessing_source(cls: str, pre: dict, stem: str, raw: bool, size: tuple[int, int]) -> str:
    """The .py's class names, statistics and load(): the run's preprocessing unless raw."""
    text = f"\n\nCLASSES = {json.dumps(pre['classes'])}  # the class of output k is CLASSES[k]\n"
    if raw:
        return text
    return (text + f"MEAN = {tuple(pre['mean'])!r}\nSTD = {tuple(pre['std'])!r}\nSIZE = {tuple(size)!r}\n"
            f"TTA = {pre['tta']!r}"
            "  # True: the logits are the mean over each image and its mirror\n\n\n"
            + inspect.getsource(WithPreprocessing).rstrip() + "\n\n\n"
            f"WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), {stem + '.pt'!r})\n\n\n"
            "def load(weights: str | None = WEIGHTS):\n"
            f'    """{cls} with the run\'s preprocessing, in eval mode: uint8 images N x H x W x C in, logits out.\n\n'
            f'    weights: the state_dict of {cls} (the .pt written beside this file; None: untrained)."""\n'
            f"    net = {cls}()\n"
            f"    if weights is not None:\n"
            f"        net.load_state_dict(torch.load(weights, map_location=\"cpu\", weights_only=True))\n"
            f"    return WithPreprocessing(net, MEAN, STD, TTA, SIZE).eval()\n")


def to_onnx(model: nn.Module, path: Path, example: torch.Tensor | None = None) -> None:
    """OUT.onnx through torch.onnx (eval mode, batch size free); example: an input (default float images)."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise _error("writing ONNX needs the onnx and onnxscript packages",
                     install_hint("export") + "; or pass --format py") from None
    model.eval()
    x = torch.randn(2, *model.input_shape) if example is None else example
    name = next(iter(inspect.signature(model.forward).parameters))
    batch = torch.export.Dim("batch", min=1)

    def write(tmp: Path) -> None:
        prog = torch.onnx.export(model, (x,), dynamic_shapes={name: {0: batch}}, dynamo=True,
                                 opset_version=ONNX_OPSET, verbose=False)
        prog.save(str(tmp))
    atomic_write(path, write)


def training_note(cfg: dict) -> str:
    """What the exported model expects of its inputs, from the run's config.json."""
    norm = cfg.get("normalize")
    if not norm:
        return ""
    mean = ", ".join(f"{v:.6g}" for v in norm["mean"])
    std = ", ".join(f"{v:.6g}" for v in norm["std"])
    return (f"Trained on {cfg.get('config', {}).get('train') or 'a data set'}: inputs are images in [0, 1] "
            f"normalised per channel,\n(x - mean) / std with mean = ({mean}) and std = ({std}).")


def export(ir: IR, out: str, weights: str | None = None, formats: str = "all", note: str = "",
           preprocess: dict | None = None, raw: bool = False) -> list[Path]:
    """Write OUT.py (and OUT.pt with weights) and OUT.onnx; returns the paths written.

    preprocess (a run's mean, std, tta and class names): OUT.onnx takes uint8 N x H x W x C images and OUT.py
    gains load() for the same, unless raw; the class names go into OUT.py and OUT.classes.json either way."""
    model = L.lower_ir(ir)
    if weights:
        load_weights(model, weights)
    model.eval()
    base = Path(out)
    if base.suffix in (".py", ".onnx"):
        base = base.with_suffix("")
    if base.parent != Path("") and not base.parent.is_dir():
        raise _error(f"-o {out}: the folder {base.parent} does not exist")
    written = []
    if "py" in FORMATS[formats]:
        text = source(ir, model, note)
        if preprocess:
            text = text.replace("\nimport torch\n", "\nimport os\n\nimport torch\n", 1) if not raw else text
            text += _preprocessing_source(class_name(ir.name), preprocess, base.name, raw, ir.input_ty.shape[1:])
        py = base.with_name(base.name + ".py")
        atomic_write(py, text)
        written.append(py)
        if weights:
            pt = base.with_name(base.name + ".pt")
            atomic_write(pt, lambda tmp: torch.save(model.state_dict(), tmp))
            written.append(pt)
    if "onnx" in FORMATS[formats]:
        onnx_path = base.with_name(base.name + ".onnx")
        if preprocess and not raw:
            c, h, w = ir.input_ty.shape
            pre = WithPreprocessing(model, preprocess["mean"], preprocess["std"], preprocess["tta"], (h, w))
            to_onnx(pre, onnx_path, torch.randint(0, 256, (2, h, w, c), dtype=torch.uint8))
        else:
            to_onnx(model, onnx_path)
        written.append(onnx_path)
    if preprocess:
        names = base.with_name(base.name + ".classes.json")
        atomic_write(names, json.dumps(preprocess["classes"], indent=1) + "\n")
        written.append(names)
    return written

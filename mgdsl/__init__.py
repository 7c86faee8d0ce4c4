"""mgdsl: a language and compiler for multigrid-style neural networks (MgNet, He & Xu 2019)."""
from __future__ import annotations

from .check import DEFAULT_MAX_PARAMS
from .diagnostics import SpecError
from .training import train  # noqa: F401  (mgdsl.train(spec, data, **options) -> summary)

__version__ = "0.1.0"


def _num(text: str) -> int | float:
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else float(text)


def parse_overrides(defines) -> dict:
    """`-D name=value` strings (or a dict) to a dict of numbers."""
    if isinstance(defines, dict):
        return dict(defines)
    out = {}
    for d in defines or ():
        name, eq, value = d.partition("=")
        value = value.strip()
        if not eq or not name.strip():
            from .diagnostics import Diagnostic
            raise SpecError([Diagnostic(f"-D {d}: expected name=number", None, "e.g. -D width=32")])
        if value.startswith("[") and value.endswith("]"):  # a list param: -D chans=[16,32,64]
            try:
                out[name.strip()] = tuple(_num(v) for v in value[1:-1].split(","))
                continue
            except ValueError:
                from .diagnostics import Diagnostic
                raise SpecError([Diagnostic(f"-D {d}: expected name=[number, ...]", None,
                                            "e.g. -D chans=[16,32,64]")]) from None
        try:
            out[name.strip()] = _num(value)
        except ValueError:
            if value.isidentifier():  # a name-valued param, e.g. -D kr=linear
                out[name.strip()] = value
                continue
            from .diagnostics import Diagnostic
            raise SpecError([Diagnostic(f"-D {d}: expected name=number", None, "e.g. -D width=32")]) from None
    return out


def compile_spec(path: str, params: dict | None = None, text: str | None = None,
                 max_params: int = DEFAULT_MAX_PARAMS, *, input_shape: tuple[int, int, int] | None = None,
                 classes: int | None = None):
    """Spec file (or text) to a checked IR; raises SpecError with located diagnostics.

    input_shape (C, H, W) and classes replace the spec's `input` and `classes` (a spec adapted to a data set)."""
    from .check import check
    from .diagnostics import Source
    from .elaborate import elaborate
    from .library import spec_path
    from .syntax import parse, read_source, retarget

    if text is None:
        path = spec_path(path)
        text = read_source(path)
    source = Source(path, text)
    model = retarget(parse(text, path), input_shape, classes)
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in (params or {}).items()}  # JSON gives lists
    ir = elaborate(model, source, params)
    check(ir, source, max_params=max_params)
    ir.source = source
    ir.max_params = max_params
    return ir


def recompile(ir, *, params: dict | None = None, input_shape: tuple[int, int, int] | None = None,
              classes: int | None = None):
    """The IR's own text, -D values and budget compiled again (for other data, or with some -D values changed):
    the one way an IR is rebuilt (training's adapt, a resumed run, eval, the equivalence check's reduced width).

    The file on disk is not read: what was compiled is what is recompiled (a run folder's saved text, an edited
    file) and ir.source.text is what a run's sha256 is of."""
    text = ir.source.text if ir.source is not None else None
    return compile_spec(ir.path, {**ir.params, **(params or {})}, text, ir.max_params or DEFAULT_MAX_PARAMS,
                        input_shape=input_shape, classes=classes)


def compile_ir(path: str, text: str | None = None, **params):
    """compile_ir("specs/mgnet.mg", width=32): the checked IR with params overridden."""
    return compile_spec(path, params, text)


def lower(ir_or_path, **params):
    """IR (or a spec path) to a torch.nn.Module whose parameter sharing is the spec's."""
    from .lowering import lower_ir

    ir = compile_ir(ir_or_path, **params) if isinstance(ir_or_path, str) else ir_or_path
    return lower_ir(ir)


def load(path: str, **params):
    """mgdsl.load("specs/mgnet.mg", width=32) or mgdsl.load("mgnet", width=32) (a bundled spec) -> nn.Module."""
    return lower(compile_ir(path, **params))


def load_run(run_dir, weights: str = "last"):
    """mgdsl.load_run("runs/mgnet-digits") -> the trained model with its preprocessing (a Predictor):
    predictor(uint8 images) gives class probabilities, .predict(images) class names, .model the nn.Module.

    weights: "last" (model.pt, the final epoch's weights, what `mgdsl eval` scores), "best" (best.pt) or a file."""
    from .training.predict import load_run as load_trained
    return load_trained(run_dir, weights)

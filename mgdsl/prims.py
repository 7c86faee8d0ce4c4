"""THE primitive table: every fact about each primitive (options and their values, shape rule, parameter
count, linearity class, MACs, the torch module it lowers to) in one entry, read by the typing stage, the
checker, the cost model and the lowering alike. torch is imported only inside the `lower` functions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from .diagnostics import Fail, did_you_mean
from .ir import Layer, Ty

# fixed stencils of the paper: K_A (5.4), K_R bilinear (4.13) and linear (4.14), R_ave (4.15)
KERNELS = {
    "laplace": ((0, -1, 0), (-1, 4, -1), (0, -1, 0)),
    "bilinear": ((0.25, 0.5, 0.25), (0.5, 1, 0.5), (0.25, 0.5, 0.25)),
    "linear": ((0, 0.5, 0.5), (0.5, 1, 0.5), (0.5, 0.5, 0)),
    "average": ((1 / 9,) * 3,) * 3,
}
PAD_MODES = {"zero": "zeros", "periodic": "circular", "reflect": "reflect"}  # spec word -> torch padding_mode
FLAG_WORDS = {None: True, 1: True, 0: False, "true": True, "yes": True, "false": False, "no": False}


class PrimError(Exception):
    """A primitive refuses its arguments or its input; the typing stage adds the location."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class SpaceMismatch(PrimError):
    """The value reaching a primitive is in another space than its signature says."""


@dataclass(frozen=True)
class Option:
    """One option of a primitive: `stride 2`, `pad periodic`, `bias`, or a bare word such as `linear`."""
    key: str
    values: tuple = ()          # the allowed values; () with `number` set: any number
    number: type | None = None  # int or float for numeric options
    default: object = None
    flag: bool = False          # `bias` alone means yes; `bias 0` / `bias false` means no
    bare: bool = False          # written as its value alone: restrict(f -> f, linear)
    minimum: float | None = None

    def parse(self, value) -> object:
        """The option's value from what was written, or PrimError naming what is allowed."""
        if self.flag:
            if value not in FLAG_WORDS:
                raise PrimError(f"{self.key} is a flag, got {value!r}", f"write `{self.key}` or `{self.key} 0`")
            return FLAG_WORDS[value]
        if self.number is not None:
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise PrimError(f"{self.key} must be a number, got {value!r}", f"e.g. {self.key} {self.default}") \
                    from None
            if self.number is int:
                if not v.is_integer():
                    raise PrimError(f"{self.key} must be a whole number, got {value!r}")
                v = int(v)
            if self.minimum is not None and v < self.minimum:
                raise PrimError(f"{self.key} must be at least {self.minimum:g}, got {value!r}")
            if self.values and v not in self.values:
                raise PrimError(f"{self.key} must be {' or '.join(map(str, self.values))}, got {value!r}",
                                f"write {' or '.join(f'{self.key} {v}' for v in self.values)}")
            return v
        if value not in self.values:
            raise PrimError(f"unknown {self.key} '{value}'", f"use one of {', '.join(map(str, self.values))}")
        return value


class Grid(Protocol):
    """What a typing rule may ask of the model: channel counts, grid sizes, and the operators it references."""
    J: int
    sizes: dict

    def chan(self, space: str, level: int | None) -> int: ...

    def apply(self, label: str, x: Ty) -> Ty: ...

    def template(self, label: str) -> list: ...

    def home(self, label: str) -> int | None: ...


@dataclass(frozen=True)
class Call:
    """A primitive as written in a definition, options resolved against the table."""
    name: str
    sig: tuple[str, str] | None
    opts: dict
    refs: tuple[str, ...] = ()


def ceil_half(n: int) -> int:
    """The size of the next coarser grid (a stride-2 operator with 'same' padding gives exactly this)."""
    return (n + 1) // 2


@dataclass(frozen=True)
class Prim:
    """One primitive: its surface (options, signature, operator arguments) and its semantics as functions."""
    name: str
    layer: str                      # Layer.kind it produces
    doc: str
    type: Callable                  # (Prim, Call, Ty, Grid) -> (Layer, Ty): the shape rule, with errors
    inline: bool = False            # may be applied inside an equation without a definition
    sig: bool = False               # needs `a -> b`
    refs: int = 0                   # operator arguments (transpose(R[l]), jacobi(A[l], ...))
    options: tuple[Option, ...] = ()
    kernel: int = 1
    params: Callable[[Layer], int] = lambda lay: 0
    klass: Callable[[Layer], str] = lambda lay: "linear"
    macs: Callable[[Layer, Ty, Ty], int] = lambda lay, x, y: 0   # per image, as torch's flop counter counts
    size_bound: bool = False        # its module is built for one input size (prolongations, jacobi, inverse)
    fixed_ref: bool = False         # built once from its operator argument's values, which must be fixed
    lower: Callable = None          # (Layer, LowerCtx) -> nn.Module; imports torch
    inline_code: str = ""           # the generated forward's code for an inline use, {x} the argument

    def option(self, key: str) -> Option | None:
        return next((o for o in self.options if o.key == key or (o.bare and key in o.values)), None)

    def read_options(self, written: dict) -> dict:
        """Written options -> {key: value} with every default filled in; PrimError on anything unknown."""
        out = {}
        for key, value in written.items():
            o = self.option(key)
            if o is None:
                keys = [v for o in self.options for v in (o.values if o.bare else (o.key,))]
                raise PrimError(f"{self.name} has no option '{key}'",
                                did_you_mean(key, keys) or (f"options: {', '.join(keys)}" if keys else
                                                            f"{self.name} takes no options"))
            if o.key in out:
                raise PrimError(f"{self.name} is given {o.key} twice")
            if o.bare:
                if value is not None:
                    raise PrimError(f"'{key}' takes no value here", f"write {self.name}(..., {key})")
                value = key
            out[o.key] = o.parse(value)
        for o in self.options:
            out.setdefault(o.key, o.default)
        return out


# ---------------------------------------------------------------- shape rules

def _same(x: Ty, space: str, channels: int) -> Ty:
    return Ty(space, x.level, channels, x.height, x.width)


def _need_grid(name: str, x: Ty) -> None:
    if x.height is None:
        raise PrimError(f"{name} needs a grid value but gets a pooled vector")


def _down(x: Ty, space: str, channels: int, g: Grid) -> Ty:
    """A stride-2 operator: the next coarser grid (or, before grid 1, the halved input domain)."""
    h, w = ceil_half(x.height), ceil_half(x.width)
    if x.level == 0:
        return Ty(space, 0, channels, h, w)
    if x.level + 1 > g.J:
        raise PrimError(f"this stride-2 operator maps grid {x.level} to grid {x.level + 1}, "
                        f"but the model has {g.J} grids")
    return Ty(space, x.level + 1, channels, h, w)


def _up(x: Ty, space: str, channels: int, g: Grid) -> Ty:
    if not x.level or x.level < 2:
        raise PrimError("a prolongation maps a coarse grid to the next finer one, but this value is on "
                        + ("grid 1" if x.level == 1 else "the input domain"))
    return Ty(space, x.level - 1, channels, *g.sizes[x.level - 1])


def _keeps_channels(name: str, x: Ty, y: Ty, g: Grid) -> None:
    """A channel-wise operator between grids: the target space must have as many channels there."""
    want = g.chan(y.space, y.level)
    if want != x.channels:
        raise PrimError(f"{name} acts channel-wise and keeps the {x.channels} channels, but {y.space} on "
                        f"grid {y.level} has {want}",
                        "use a strided convolution (e.g. conv3(a -> b, stride 2)) where the channel count changes")


def type_pointwise(p: Prim, c: Call, x: Ty, g: Grid):
    lay = Layer(p.layer, x.channels, x.channels, vector=x.height is None)
    return lay, x


def type_global_pool(p: Prim, c: Call, x: Ty, g: Grid):
    _need_grid(p.name, x)
    return Layer(p.layer, x.channels, x.channels), Ty(x.space, None, x.channels)


def type_pool2(p: Prim, c: Call, x: Ty, g: Grid):
    _need_grid(p.name, x)
    y = _down(x, x.space, x.channels, g)
    if y.level:
        _keeps_channels(p.name, x, y, g)
    return Layer(p.layer, x.channels, x.channels, kernel=p.kernel, stride=2), y


def type_split(p: Prim, c: Call, x: Ty, g: Grid):
    return Layer(p.layer, x.channels, 2 * x.channels), _same(x, x.space, 2 * x.channels)


def type_delta(p: Prim, c: Call, x: Ty, g: Grid):
    if x.channels % 2:
        raise PrimError("delta needs an even channel count [X, Y]")
    return Layer(p.layer, x.channels, x.channels // 2), _same(x, x.space, x.channels // 2)


def type_scale(p: Prim, c: Call, x: Ty, g: Grid):
    return Layer(p.layer, x.channels, x.channels, init=c.opts["init"]), x


def type_linear(p: Prim, c: Call, x: Ty, g: Grid):
    if x.height is not None:
        raise PrimError("linear maps a pooled vector; apply avgpool first", "e.g. fc(avgpool(u))")
    cout = g.chan(c.sig[1], None)
    return Layer(p.layer, x.channels, cout, bias=c.opts["bias"]), Ty(c.sig[1], None, cout)


def _groups(c: Call, cin: int, cout: int) -> int:
    if c.opts["depthwise"]:
        if c.opts["groups"] != 1:
            raise PrimError("depthwise and groups are given together", "depthwise means groups = channels")
        if cout != cin:
            raise PrimError(f"a depthwise conv keeps the channels, but maps {cin} to {cout}")
        return cin
    groups = c.opts["groups"]
    if cin % groups or cout % groups:
        raise PrimError(f"groups={groups} must divide {cin} and {cout}")
    return groups


def type_conv(p: Prim, c: Call, x: Ty, g: Grid):
    _need_grid(p.name, x)
    k, stride, pad = p.kernel, c.opts["stride"], c.opts["pad"]
    if pad == "reflect" and min(x.height, x.width) <= k // 2:
        raise PrimError(f"reflect padding needs more than {k // 2} point(s) per side, but this grid is "
                        f"{x.height}x{x.width}", "use pad zero or periodic, or fewer grids")
    if pad == "periodic" and min(x.height, x.width) < k // 2:
        raise PrimError(f"periodic padding wraps {k // 2} point(s) per side, but this grid is "
                        f"{x.height}x{x.width}", "use pad zero, a smaller kernel or fewer grids")
    if stride == 1:
        level = x.level
    else:
        level = x.level + 1 if x.level else x.level
        if x.level and level > g.J:
            raise PrimError(f"this stride-2 operator maps grid {x.level} to grid {level}, "
                            f"but the model has {g.J} grids")
    cout = g.chan(c.sig[1], level)
    lay = Layer(p.layer, x.channels, cout, kernel=k, stride=stride, pad=pad, bias=c.opts["bias"],
                groups=_groups(c, x.channels, cout))
    y = _same(x, c.sig[1], cout) if stride == 1 else _down(x, c.sig[1], cout, g)
    return lay, y


def deconv_sizes(k: int, h: int) -> tuple[int, int]:
    """The output sizes a stride-2 transposed convolution with kernel k and padding (k-1)//2 can reach."""
    base = (h - 1) * 2 - 2 * ((k - 1) // 2) + k
    return base, base + 1  # output_padding 0 or 1 (< stride)


def _reach(name: str, k: int, x: Ty, y: Ty) -> None:
    (lo_h, hi_h), (lo_w, hi_w) = deconv_sizes(k, x.height), deconv_sizes(k, x.width)
    if not (lo_h <= y.height <= hi_h and lo_w <= y.width <= hi_w):
        raise PrimError(f"{name} maps {x.height}x{x.width} to {lo_h}x{lo_w} (or one more per side), but grid "
                        f"{y.level} is {y.height}x{y.width}",
                        "use deconv3 (reaches odd and even sizes), or an input size whose grids are even")


def type_deconv(p: Prim, c: Call, x: Ty, g: Grid):
    _need_grid(p.name, x)
    if not x.level or x.level < 2:
        raise PrimError("a prolongation maps a coarse grid to the next finer one, but this value is on "
                        + ("grid 1" if x.level == 1 else "the input domain"))
    cout = g.chan(c.sig[1], x.level - 1)
    y = _up(x, c.sig[1], cout, g)
    _reach(p.name, p.kernel, x, y)
    lay = Layer(p.layer, x.channels, cout, kernel=p.kernel, stride=2, bias=c.opts["bias"],
                groups=_groups(c, x.channels, cout), out_size=(y.height, y.width))
    return lay, y


def type_laplace(p: Prim, c: Call, x: Ty, g: Grid):
    _need_grid(p.name, x)
    cout = g.chan(c.sig[1], x.level)
    if cout != x.channels:
        raise PrimError(f"laplace acts channel-wise and keeps the channel count, but maps {x.channels} to {cout}")
    pad = c.opts["pad"]
    if pad == "reflect" and min(x.height, x.width) < 2:
        raise PrimError(f"reflect padding needs more than 1 point per side, but this grid is {x.height}x{x.width}",
                        "use pad zero or periodic, or fewer grids")
    return Layer(p.layer, x.channels, cout, kernel=3, stencil="laplace", pad=pad), _same(x, c.sig[1], cout)


def type_restrict(p: Prim, c: Call, x: Ty, g: Grid):
    _need_grid(p.name, x)
    y = _down(x, c.sig[1], x.channels, g)
    if y.level:
        _keeps_channels(p.name, x, y, g)
    return Layer(p.layer, x.channels, x.channels, kernel=3, stride=2, stencil=c.opts["stencil"]), y


def _prolong(p: Prim, stencil: str, space: str, x: Ty, g: Grid):
    _need_grid(p.name, x)
    y = _up(x, space, x.channels, g)
    _keeps_channels(p.name, x, y, g)
    return Layer("prolong", x.channels, x.channels, kernel=3, stride=2, stencil=stencil,
                 out_size=(y.height, y.width)), y


def type_prolong(p: Prim, c: Call, x: Ty, g: Grid):
    return _prolong(p, c.opts["stencil"], c.sig[1], x, g)


def type_transpose(p: Prim, c: Call, x: Ty, g: Grid):
    tpl = g.template(c.refs[0])
    if len(tpl) != 1 or tpl[0].kind != "restrict":
        raise PrimError("transpose takes one restriction operator, e.g. transpose(R[l])",
                        "define R[l] = restrict(f -> f) and P[l] = transpose(R[l])")
    try:
        stencil = PRIMS["restrict"].read_options(tpl[0].opts)["stencil"]
    except PrimError as e:  # R's own error, at R's definition: the same diagnostic as R's, so it is shown once
        raise Fail(str(e), tpl[0].span, e.hint) from None
    return _prolong(p, stencil, x.space, x, g)


def type_sub_id(p: Prim, c: Call, x: Ty, g: Grid):
    label = c.refs[0]
    y = g.apply(label, x)
    if (y.space, y.channels, y.level, y.height) != (x.space, x.channels, x.level, x.height):
        raise PrimError(f"sub_id({label}) needs an operator that keeps its type, but it maps "
                        f"{x.describe()} to {y.describe()}")
    return Layer(p.layer, x.channels, x.channels, ref=label), y  # its class is its reference's (passes.classify)


def type_solver(p: Prim, c: Call, x: Ty, g: Grid):
    """jacobi(A, f -> u), rbgs(A, f -> u) and inverse(A, f -> u): approximate or exact A^-1, so A is typed on the signature's
    source space at this grid and must map it back to the space of the value given."""
    _need_grid(p.name, x)
    label = c.refs[0]
    if c.sig[0] != x.space:
        raise SpaceMismatch(f"maps {c.sig[0]} -> {c.sig[1]} but is applied to {x.space}")
    at = _same(x, c.sig[1], g.chan(c.sig[1], x.level))
    try:
        ay = g.apply(label, at)
    except Fail:  # `S[l] = inverse(A[J], ...)`: say so here, not through the errors of A[J]'s own parts
        home = g.home(label)
        if home is None or home == x.level:
            raise
        raise PrimError(f"{p.name}({label}) is applied on another grid than {label}'s, grid {home}, and {label} "
                        f"cannot act there",
                        f"invert each grid's own operator: S[l] = {p.name}(A[l], ...)"
                        + ("; inverse(A[J], ...) only as S[J], the coarsest grid's" if p.name == "inverse" else ""))
    if (ay.space, ay.channels, ay.level, ay.height, ay.width) != (x.space, x.channels, x.level, x.height, x.width):
        raise PrimError(f"{p.name}({label}) inverts {at.describe()} -> {ay.describe()}, but gets {x.describe()}")
    if p.name == "inverse" and at.channels * at.height * at.width > 4096:
        more = f"grids auto (or more than {g.J}) makes grid {g.J}, the coarsest, small enough" if x.level == g.J \
            else "use it on the coarsest grid only, e.g. S[J] = inverse(A[J], f -> u)"
        raise PrimError(f"inverse() on {at.channels * at.height * at.width} unknowns is too large (limit 4096)", more)
    return Layer(p.layer, x.channels, at.channels, ref=label, omega=c.opts.get("omega")), at


# ---------------------------------------------------------------- parameters, class, MACs

def _conv_params(lay: Layer) -> int:
    return lay.cout * (lay.cin // lay.groups) * lay.kernel ** 2 + (lay.cout if lay.bias else 0)


def _deconv_params(lay: Layer) -> int:
    return lay.cin * (lay.cout // lay.groups) * lay.kernel ** 2 + (lay.cout if lay.bias else 0)


def _affine_if_bias(lay: Layer) -> str:
    return "affine" if lay.bias else "linear"


def _conv_macs(lay: Layer, x: Ty, y: Ty) -> int:
    return lay.cout * (lay.cin // lay.groups) * lay.kernel ** 2 * y.height * y.width


def _deconv_macs(lay: Layer, x: Ty, y: Ty) -> int:
    return lay.cin * (lay.cout // lay.groups) * lay.kernel ** 2 * x.height * x.width


def _restrict_macs(lay: Layer, x: Ty, y: Ty) -> int:  # a channel-wise (depthwise) strided conv2d
    return lay.cin * lay.kernel ** 2 * y.height * y.width


def _prolong_macs(lay: Layer, x: Ty, y: Ty) -> int:  # a channel-wise conv_transpose2d
    return lay.cin * lay.kernel ** 2 * x.height * x.width


def _inverse_macs(lay: Layer, x: Ty, y: Ty) -> int:  # a dense (n x n) matrix product
    n = x.channels * x.height * x.width
    return n * n


# ---------------------------------------------------------------- lowering (torch imported here only)

@dataclass
class LowerCtx:
    """What a lowering function may read: the modules built so far and the IR's instances."""
    built: dict
    instances: dict


def _lower_conv(lay: Layer, ctx: LowerCtx):
    from torch import nn
    m = nn.Conv2d(lay.cin, lay.cout, lay.kernel, lay.stride, padding=lay.kernel // 2, groups=lay.groups,
                  bias=lay.bias, padding_mode=PAD_MODES[lay.pad])
    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return m


def _lower_deconv(lay: Layer, ctx: LowerCtx):
    from .lowering import Deconv
    return Deconv(lay.cin, lay.cout, lay.kernel, (lay.kernel - 1) // 2, lay.groups, lay.bias, lay.out_size)


def _lower_bn(lay: Layer, ctx: LowerCtx):
    from torch import nn
    return nn.BatchNorm1d(lay.cin) if lay.vector else nn.BatchNorm2d(lay.cin)


def _module(name: str, *args):
    """A lowering that builds `name` from torch.nn (or mgdsl.lowering) with fixed arguments."""
    def lower(lay: Layer, ctx: LowerCtx):
        from torch import nn
        from . import lowering
        cls = getattr(nn, name, None) or getattr(lowering, name)
        return cls(*args)
    return lower


def _lower_linear(lay: Layer, ctx: LowerCtx):
    from torch import nn
    return nn.Linear(lay.cin, lay.cout, bias=lay.bias)


def _lower_scale(lay: Layer, ctx: LowerCtx):
    from .lowering import Scale
    return Scale(lay.init)


def _lower_stencil(lay: Layer, ctx: LowerCtx):
    from .lowering import Stencil
    if lay.kind == "restrict":
        return Stencil(lay.stencil, lay.cin, stride=2)
    if lay.kind == "prolong":
        return Stencil(lay.stencil, lay.cin, transposed=True, out_size=lay.out_size)
    return Stencil(lay.stencil, lay.cin, pad=lay.pad)


def _lower_sub_id(lay: Layer, ctx: LowerCtx):
    from .lowering import SubId
    return SubId(ctx.built[lay.ref])


def _lower_jacobi(lay: Layer, ctx: LowerCtx):
    from .lowering import Jacobi
    a = ctx.instances[lay.ref].in_ty
    return Jacobi(ctx.built[lay.ref], a.channels, (a.height, a.width), lay.omega)


def _lower_rbgs(lay: Layer, ctx: LowerCtx):
    from .lowering import RedBlack
    a = ctx.instances[lay.ref].in_ty
    return RedBlack(ctx.built[lay.ref], a.channels, (a.height, a.width), lay.omega)


def _lower_inverse(lay: Layer, ctx: LowerCtx):
    from .lowering import Inverse
    a = ctx.instances[lay.ref].in_ty
    return Inverse(ctx.built[lay.ref], a.channels, (a.height, a.width))


# ---------------------------------------------------------------- the table

_BIAS = Option("bias", flag=True, default=False)
_CONV_OPTIONS = (Option("stride", (1, 2), int, 1), _BIAS, Option("depthwise", flag=True, default=False),
                 Option("groups", number=int, default=1, minimum=1), Option("pad", tuple(PAD_MODES), default="zero"))
_DECONV_OPTIONS = (Option("stride", (2,), int, 2), _BIAS, Option("depthwise", flag=True, default=False),
                   Option("groups", number=int, default=1, minimum=1), Option("pad", ("zero",), default="zero"))


def _table() -> dict[str, Prim]:
    prims = [
        Prim("relu", "relu", "max(x, 0)", type_pointwise, inline=True, klass=lambda lay: "nonlinear",
             lower=_module("ReLU"), inline_code="F.relu({x})"),
        Prim("id", "id", "the identity", type_pointwise, inline=True, lower=_module("Identity"), inline_code="{x}"),
        Prim("bn", "bn", "batch normalisation (2d on a grid, 1d on a pooled vector)", type_pointwise,
             params=lambda lay: 2 * lay.cin, klass=lambda lay: "affine", lower=_lower_bn),
        Prim("avgpool", "avgpool", "global average pool: grid -> vector", type_global_pool, inline=True,
             lower=_module("GlobalAvgPool"), inline_code="{x}.mean((-2, -1))"),
        Prim("avgpool2", "avgpool2", "2x2 average pool, stride 2 (ceil)", type_pool2, inline=True, kernel=2,
             lower=_module("AvgPool2d", 2, 2, 0, True), inline_code="F.avg_pool2d({x}, 2, 2, ceil_mode=True)"),
        Prim("maxpool2", "maxpool2", "2x2 max pool, stride 2 (ceil)", type_pool2, inline=True, kernel=2,
             klass=lambda lay: "nonlinear", lower=_module("MaxPool2d", 2, 2, 0, 1, False, True),
             inline_code="F.max_pool2d({x}, 2, 2, ceil_mode=True)"),
        Prim("maxpool3", "maxpool3", "R_max: 3x3 max pool, stride 2, padding 1", type_pool2, inline=True, kernel=3,
             klass=lambda lay: "nonlinear", lower=_module("MaxPool2d", 3, 2, 1),
             inline_code="F.max_pool2d({x}, 3, 2, 1)"),
        Prim("split", "split", "[id, -id] (8.13): doubles the channels", type_split, lower=_module("Split")),
        Prim("delta", "delta", "delta-hat (8.12): [X, Y] -> Y - X", type_delta, lower=_module("Delta")),
        Prim("scale", "scale", "a trained scalar", type_scale, options=(Option("init", (), float, 1.0),),
             params=lambda lay: 1, lower=_lower_scale),
        Prim("linear", "linear", "a fully connected layer on a pooled vector", type_linear, sig=True,
             options=(Option("bias", flag=True, default=True),),
             params=lambda lay: lay.cin * lay.cout + (lay.cout if lay.bias else 0), klass=_affine_if_bias,
             macs=lambda lay, x, y: lay.cin * lay.cout, lower=_lower_linear),
        Prim("laplace", "stencil", "K_A (5.4), channel-wise", type_laplace, sig=True,
             options=(Option("pad", tuple(PAD_MODES), default="zero"),), kernel=3, lower=_lower_stencil),
        Prim("restrict", "restrict", "K_R (4.13/4.14) or R_ave (4.15), channel-wise, stride 2", type_restrict,
             sig=True, options=(Option("stencil", ("bilinear", "linear", "average"), default="bilinear",
                                       bare=True),), kernel=3, macs=_restrict_macs, lower=_lower_stencil),
        Prim("prolong", "prolong", "K_R transposed: the next finer grid", type_prolong, sig=True,
             options=(Option("stencil", ("bilinear", "linear"), default="bilinear", bare=True),), kernel=3,
             macs=_prolong_macs, size_bound=True, lower=_lower_stencil),
        Prim("transpose", "prolong", "P = R^T of a restriction R", type_transpose, refs=1, kernel=3,
             macs=_prolong_macs, size_bound=True, lower=_lower_stencil),
        Prim("sub_id", "sub_id", "chi - id (8.13), sharing chi's parameters", type_sub_id, refs=1,
             lower=_lower_sub_id),
        Prim("jacobi", "jacobi", "damped Jacobi omega D^-1 of a fixed linear A (5.6)", type_solver, sig=True,
             refs=1, options=(Option("omega", (), float, 1.0),), size_bound=True, fixed_ref=True,
             lower=_lower_jacobi),
        Prim("rbgs", "rbgs", "red-black Gauss-Seidel of a fixed linear A: red points (i + j even) from the "
             "residual, then black points from what red left (omega: SOR)", type_solver, sig=True, refs=1,
             options=(Option("omega", (), float, 1.0),), size_bound=True, fixed_ref=True, lower=_lower_rbgs),
        Prim("inverse", "inverse", "exact solve with a fixed linear A (coarsest grid)", type_solver, sig=True,
             refs=1, size_bound=True, fixed_ref=True, macs=_inverse_macs, lower=_lower_inverse),
    ]
    for k in (1, 3, 5, 7):
        prims.append(Prim(f"conv{k}", "conv", f"{k}x{k} convolution", type_conv, sig=True, options=_CONV_OPTIONS,
                          kernel=k, params=_conv_params, klass=_affine_if_bias, macs=_conv_macs, lower=_lower_conv))
    for k in (2, 3, 4):
        prims.append(Prim(f"deconv{k}", "deconv", f"{k}x{k} transposed convolution to the next finer grid",
                          type_deconv, sig=True, options=_DECONV_OPTIONS, kernel=k, params=_deconv_params,
                          klass=_affine_if_bias, macs=_deconv_macs, size_bound=True, lower=_lower_deconv))
    return {p.name: p for p in prims}


PRIMS: dict[str, Prim] = _table()
# a Layer's kind -> its primitive (conv1..conv7 share one kind and the same functions)
BY_LAYER: dict[str, Prim] = {}
for _p in PRIMS.values():
    BY_LAYER.setdefault(_p.layer, _p)
INLINE = {name for name, p in PRIMS.items() if p.inline}


UP = {"prolong", "deconv"}  # layer kinds that map a grid to the next finer one


def layer_at(lay: Layer, x: Ty, sizes: dict) -> Ty:
    """A typed layer's output at input x: channels and space are fixed by its first use, the grid follows x
    (stride 2: the next coarser grid, a prolongation: the next finer one). Callers check the level exists."""
    out = lay.out_ty
    if lay.in_ty == x:
        return out
    if out.height is None:
        return Ty(out.space, None, out.channels)
    if lay.kind in UP:
        return Ty(out.space, x.level - 1, out.channels, *sizes.get(x.level - 1, (out.height, out.width)))
    if lay.stride == 2:
        return Ty(out.space, x.level + 1 if x.level else x.level, out.channels, ceil_half(x.height),
                  ceil_half(x.width))
    return Ty(out.space, x.level, out.channels, x.height, x.width)


def layer_params(lay: Layer) -> int:
    return 0 if lay.kind == "ref" else BY_LAYER[lay.kind].params(lay)


def layer_klass(lay: Layer) -> str:
    return "linear" if lay.kind == "ref" else BY_LAYER[lay.kind].klass(lay)

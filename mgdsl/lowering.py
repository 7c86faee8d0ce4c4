"""IR to torch: one nn.Module per operator instance, a generated straight-line forward (like torch.fx)."""
from __future__ import annotations

import contextlib
import keyword
import linecache

import torch
import torch.nn.functional as F
from torch import nn

from .ir import IR, Instance, Layer, reachable
from .prims import BY_LAYER, KERNELS, PAD_MODES, PRIMS, LowerCtx

@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Build modules and buffers in `dtype` (float64 for solves and theorem checks), then restore the default."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


class Scale(nn.Module):
    """A trained scalar (the alpha, omega of the multi-step and Chebyshev schemes)."""

    def __init__(self, init: float):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x):
        return self.weight * x


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean((-2, -1))


class Split(nn.Module):
    """[id, -id] of (8.13): doubles the channels."""

    def forward(self, x):
        return torch.cat([x, -x], 1)


class Delta(nn.Module):
    """delta-hat of (8.12): [X, Y] -> Y - X, so that delta(relu([x, -x])) = -x.

    The paper prints (8.16) as -(X + Y) with ReLU(x) + ReLU(-x) = x (8.17); that sum is |x|. The identity
    that makes Theorem 8.3 hold is ReLU(x) - ReLU(-x) = x, hence Y - X here."""

    def forward(self, x):
        a, b = x.chunk(2, 1)
        return b - a


class SubId(nn.Module):
    """chi - id of (8.13), sharing chi's parameters."""

    def __init__(self, chi: nn.Module):
        super().__init__()
        self.chi = chi

    def forward(self, x):
        return self.chi(x) - x


class Stencil(nn.Module):
    """A fixed (untrained) channel-wise 3x3 stencil: K_A, K_R (stride 2) or its transpose P = R^T."""

    def __init__(self, name: str, channels: int, stride: int = 1, transposed: bool = False, pad: str = "zero",
                 out_size: tuple[int, int] | None = None):
        super().__init__()
        k = torch.tensor(KERNELS[name], dtype=torch.get_default_dtype())
        self.register_buffer("kernel", k.expand(channels, 1, 3, 3).clone(), persistent=False)
        self.channels, self.stride, self.transposed = channels, stride, transposed
        self.pad, self.out_size = PAD_MODES[pad], out_size
        # the nonzero taps, known when built: no branch on tensor values in forward (torch.export, ONNX)
        self.taps = [(dy, dx) for dy in range(3) for dx in range(3) if KERNELS[name][dy][dx] != 0]

    def forward(self, x):
        k = self.kernel.to(x.dtype)
        if self.transposed:
            base = (x.shape[-2] - 1) * 2 - 2 + 3, (x.shape[-1] - 1) * 2 - 2 + 3
            op = (self.out_size[0] - base[0], self.out_size[1] - base[1]) if self.out_size else (0, 0)
            return F.conv_transpose2d(x, k, stride=2, padding=1, output_padding=op, groups=self.channels)
        if self.stride == 1:
            return self._shifted(x, k)
        if self.pad != "zeros":
            return F.conv2d(F.pad(x, (1, 1, 1, 1), mode=self.pad), k, stride=self.stride, groups=self.channels)
        return F.conv2d(x, k, stride=self.stride, padding=1, groups=self.channels)

    def _shifted(self, x, k):
        """A 3x3 channel-wise stencil as a sum of shifted copies: several times faster than a one-channel
        conv2d on the CPU (the multigrid fine-grid operator)."""
        h, w = x.shape[-2:]
        xp = F.pad(x, (1, 1, 1, 1), mode="constant" if self.pad == "zeros" else self.pad)
        out = None
        for dy, dx in self.taps:
            term = k[:, 0, dy, dx].view(1, -1, 1, 1) * xp[..., dy:dy + h, dx:dx + w]
            out = term if out is None else out + term
        return out if out is not None else torch.zeros_like(x)


def probe_matrix(op: nn.Module, channels: int, size: tuple[int, int], dtype=torch.float64) -> torch.Tensor:
    """The dense matrix of a fixed linear operator, column by column (small coarse grids only).

    Fixed operators compute in their input's dtype, so probing in float64 needs no module conversion."""
    n = channels * size[0] * size[1]
    eye = torch.eye(n, dtype=dtype).reshape(n, channels, *size)
    with torch.no_grad():
        cols = op(eye)
    return cols.reshape(n, -1).T


def probe_diagonal(op: nn.Module, channels: int, size: tuple[int, int], period: int = 5) -> torch.Tensor:
    """diag(A) of a fixed linear operator with stencil radius < period/2, by coloured probing."""
    h, w = size
    diag = torch.zeros(1, channels, h, w, dtype=torch.float64)
    ii = torch.arange(h).view(h, 1)
    jj = torch.arange(w).view(1, w)
    with torch.no_grad():
        for c in range(channels):
            for a in range(period):
                for b in range(period):
                    mask = ((ii % period == a) & (jj % period == b)).to(torch.float64)
                    e = torch.zeros(1, channels, h, w, dtype=torch.float64)
                    e[0, c] = mask
                    diag[0, c] += op(e)[0, c] * mask
    return diag


class Jacobi(nn.Module):
    """Damped Jacobi S = omega D^-1 for a fixed linear A (5.6), D the exact diagonal of A."""

    def __init__(self, a: nn.Module, channels: int, size: tuple[int, int], omega: float):
        super().__init__()
        if isinstance(a, VarStencil):
            diag = a.coef[4].double().unsqueeze(0)
        elif isinstance(a, Stencil) and a.stride == 1 and not a.transposed:
            diag = a.kernel[:, 0, 1, 1].double().view(1, -1, 1, 1).expand(1, channels, *size)
        else:
            diag = probe_diagonal(a, channels, size)
        self.register_buffer("scale", (omega / diag).to(torch.get_default_dtype()), persistent=False)

    def forward(self, x):
        return self.scale.to(x.dtype) * x


class RedBlack(Jacobi):
    """One red-black Gauss-Seidel sweep for A e = r from e = 0, a linear map r -> e: red points (i + j even)
    get omega D^-1 r, then black points omega D^-1 (r - A e). So u + S(f - A u) is one sweep from u; for a
    5-point A it is exact Gauss-Seidel in red-black order (omega = 1), for a 9-point A each colour is a Jacobi step."""

    def __init__(self, a: nn.Module, channels: int, size: tuple[int, int], omega: float):
        super().__init__(a, channels, size, omega)
        self.a = a
        h, w = size
        red = (torch.arange(h).view(h, 1) + torch.arange(w).view(1, w)) % 2 == 0
        self.register_buffer("red", red.to(torch.get_default_dtype()).expand(1, channels, h, w).clone(),
                             persistent=False)

    def forward(self, x):
        scale, red = self.scale.to(x.dtype), self.red.to(x.dtype)
        e = red * scale * x
        return e + (1 - red) * scale * (x - self.a(e))


class Inverse(nn.Module):
    """Exact solve with a fixed linear A on a small (coarsest) grid: a dense inverse."""

    # refused beyond this 1-norm condition number: in float64 the inverse would carry no correct digit (a
    # periodic or reflecting laplace has the constants in its null space: infinite). Both live in the class,
    # so that the standalone source `mgdsl export` writes carries them.
    MAX_CONDITION = 1e12

    class Singular(ValueError):
        """inverse() of a fixed operator that has no inverse (or none worth computing) on its grid."""

    def __init__(self, a: nn.Module, channels: int, size: tuple[int, int]):
        super().__init__()
        n = channels * size[0] * size[1]
        if n > 4096:
            raise ValueError(f"inverse() on {n} unknowns is too large; use it on the coarsest grid only")
        m = probe_matrix(a, channels, size).double()
        try:
            inv = torch.linalg.inv(m)
            cond = (torch.linalg.matrix_norm(m, 1) * torch.linalg.matrix_norm(inv, 1)).item()  # 1-norm condition
        except torch.linalg.LinAlgError:
            cond = float("inf")
        if not cond < self.MAX_CONDITION:
            raise self.Singular(f"inverse() of an operator that is singular on this grid (condition number "
                                   f"{cond:.3g}): its solution is not unique")
        self.register_buffer("inv", inv.to(torch.get_default_dtype()), persistent=False)
        self.shape = (channels, *size)

    def forward(self, x):
        flat = x.reshape(x.shape[0], -1)
        return (flat @ self.inv.to(x.dtype).T).reshape(x.shape[0], *self.shape)


def _layer_module(lay: Layer, ctx: LowerCtx) -> nn.Module:
    """A layer's module, by the primitive table; a reference is the referenced instance's very module."""
    return ctx.built[lay.ref] if lay.kind == "ref" else BY_LAYER[lay.kind].lower(lay, ctx)


class Deconv(nn.ConvTranspose2d):
    """A trained transposed convolution (P of V-MgNet) that lands exactly on the finer grid's size."""

    def __init__(self, cin, cout, k, pad, groups, bias, out_size):
        super().__init__(cin, cout, k, stride=2, padding=pad, groups=groups, bias=bias)
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.out_size = out_size

    def forward(self, x):
        return super().forward(x, output_size=list(self.out_size)) if self.out_size else super().forward(x)


class VarStencil(nn.Module):
    """A fixed channel-wise operator with a 3x3 stencil whose coefficients vary by grid point.

    This is how a Galerkin coarse operator R A P (5.11) is applied: assembled once, exactly, including the
    rows next to the boundary where it differs from the interior stencil."""

    def __init__(self, coef: torch.Tensor):
        super().__init__()
        self.register_buffer("coef", coef, persistent=False)  # (9, C, H, W), offsets in row-major order

    def forward(self, x):
        h, w = x.shape[-2:]
        xp = F.pad(x, (1, 1, 1, 1))
        c = self.coef.to(x.dtype)
        out = c[4] * x
        for k in (0, 1, 2, 3, 5, 6, 7, 8):
            dy, dx = divmod(k, 3)
            out = out + c[k] * xp[..., dy:dy + h, dx:dx + w]
        return out


def assemble(op: nn.Module, channels: int, size: tuple[int, int]) -> VarStencil | None:
    """Probe a fixed channel-wise operator with 9 colourings (period 3) into a VarStencil; None if it is wider."""
    h, w = size
    ii = torch.arange(h).view(h, 1)
    jj = torch.arange(w).view(1, w)
    coef = torch.zeros(9, channels * h * w, dtype=torch.float64)
    with torch.no_grad():
        for a in range(3):
            for b in range(3):
                e = ((ii % 3 == a) & (jj % 3 == b)).to(torch.float64).expand(1, channels, h, w)
                y = op(e)[0].reshape(1, -1)
                # output point p sees input point p + d with (p + d) = (a, b) mod 3: a unique d in {-1, 0, 1}^2
                dy = (a - ii + 1) % 3 - 1
                dx = (b - jj + 1) % 3 - 1
                k = ((dy + 1) * 3 + (dx + 1)).expand(h, w).reshape(1, -1).repeat(1, channels)
                coef.scatter_add_(0, k, y)
        coef = coef.reshape(9, channels, h, w)
        var = VarStencil(coef)
        x = torch.randn(1, channels, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        ref, got = op(x), var(x)
    if (ref - got).abs().max() > 1e-10 * max(1.0, ref.abs().max().item()):
        return None  # wider than 3x3: passes.mark_assembled should not have chosen it
    return var


def build_instances(ir: IR) -> dict[str, nn.Module]:
    """label -> module; a reference to another instance is that very module (shared parameters)."""
    built: dict[str, nn.Module] = {}
    ctx = LowerCtx(built, ir.instances)
    for label, inst in ir.instances.items():
        try:
            mods = [_layer_module(lay, ctx) for lay in inst.layers]
        except Inverse.Singular as e:  # a property of the spec's numbers, found only when the matrix is built
            from .diagnostics import Diagnostic, SpecError
            raise SpecError([Diagnostic(f"{label}: {e}", inst.span, "zero padding (the default) makes laplace "
                                        "invertible; with periodic or reflect padding smooth the coarsest grid "
                                        "with jacobi(...) instead")], ir.source) from None
        built[label] = mods[0] if len(mods) == 1 and inst.layers[0].kind != "ref" else nn.Sequential(*mods)
        if inst.assembled:
            t = inst.in_ty
            var = assemble(built[label], t.channels, (t.height, t.width))
            if var is None:
                raise AssertionError(f"{label} was classified as a 3x3 stencil but its stencil is wider")
            built[label] = var.to(torch.get_default_dtype())
    return built


def attribute(name: str) -> str:
    """How generated code reaches the module named `name`: self.A, or getattr(self, 'class') for a name the
    grammar accepts but Python cannot write after a dot (a keyword such as class or lambda, a primed A')."""
    return f"self.{name}" if name.isidentifier() and not keyword.iskeyword(name) else f"getattr(self, {name!r})"


def _access(inst: Instance) -> str:
    return attribute(inst.name) + "".join(f'["{i}"]' for i in inst.index)


def generate(ir: IR, roots: list[int], returns: str) -> str:
    """Straight-line Python for the live part of the graph: no interpreter overhead, no graph breaks."""
    lines = []
    for nid in sorted(reachable(ir.nodes, roots)):
        n = ir.nodes[nid]
        a = [f"v{k}" for k in n.args]
        if n.op == "input":
            rhs = "x"
        elif n.op == "zero":
            shape = ", ".join(map(str, n.ty.shape))
            rhs = f"x.new_zeros((x.shape[0], {shape}))"
        elif n.op == "apply":
            rhs = f"{_access(ir.instances[n.inst])}({a[0]})"
        elif n.op == "prim":
            rhs = PRIMS[n.prim].inline_code.format(x=a[0])
        elif n.op == "add":
            rhs = f"{a[0]} + {a[1]}"
        elif n.op == "sub":
            rhs = f"{a[0]} - {a[1]}"
        elif n.op == "scale":
            rhs = f"{n.coef!r} * {a[0]}"
        else:
            raise ValueError(n.op)
        tag = f"  # {n.tag.state}^{{{n.tag.level},{n.tag.step}}} {n.tag.phase}" if n.tag else ""
        lines.append(f"    v{nid} = {rhs}{tag}")
    return "\n".join(lines + [f"    return {returns}"])


class MgModule(nn.Module):
    """The lowered spec. `code` shows the generated forward; `instance(label)` gives an operator's module."""

    def __init__(self, ir: IR):
        super().__init__()
        self.spec_name = ir.name
        self.input_shape = ir.input_ty.shape
        self.output_shape = ir.output_ty.shape
        built = build_instances(ir)
        for label, inst in ir.instances.items():
            if not inst.index:
                setattr(self, inst.name, built[label])
                continue
            if not hasattr(self, inst.name):
                setattr(self, inst.name, nn.ModuleDict())
            d = getattr(self, inst.name)
            for i in inst.index[:-1]:
                if str(i) not in d:
                    d[str(i)] = nn.ModuleDict()
                d = d[str(i)]
            d[str(inst.index[-1])] = built[label]
        self._paths = {label: (inst.name, tuple(map(str, inst.index))) for label, inst in ir.instances.items()}

    def __reduce__(self):
        """Pickling (issue 11): rebuilt from the generated source and the state, see _unpickle below."""
        return _unpickle, (self.spec_name, self.code, self.states_code, self.__dict__)

    def instance(self, label: str) -> nn.Module:
        """The module of an operator instance, e.g. model.instance("A[1]")."""
        name, index = self._paths[label]
        m = getattr(self, name)
        for key in index:
            m = m[key]
        return m


def lower_ir(ir: IR) -> MgModule:
    """Generate forward (and forward_states, every tagged state, for the theorem checks) as a class."""
    code = "def forward(self, x):\n" + generate(ir, [ir.output], f"v{ir.output}")
    live = reachable(ir.nodes, [ir.output])
    tagged = {k: v for k, v in ir.states.items() if v in live or ir.nodes[v].op == "zero"}  # reach the output
    states = "def forward_states(self, x):\n" + generate(
        ir, list(tagged.values()) + [ir.output],
        "{" + "".join(f"{k!r}: v{v}, " for k, v in tagged.items()) + f"'output': v{ir.output}" + "}")
    return _generated_class(ir.name, code, states)(ir)


def _generated_class(name: str, code: str, states: str) -> type:
    """The class MgModule_NAME with the generated forward and forward_states."""
    ns = {"F": F, "torch": torch}
    for src, fname in ((code, "forward"), (states, "forward_states")):
        filename = f"<mgdsl:{name}:{fname}>"
        linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
        exec(compile(src, filename, "exec"), ns)
    return type(f"MgModule_{name}", (MgModule,), {"forward": ns["forward"], "forward_states": ns["forward_states"],
                                                  "code": code, "states_code": states})


# ------------------------------------------------------------------ pickling (issue 11)
# The class of a lowered module is generated, so pickle cannot find it by name. Like torch.fx's GraphModule,
# a lowered module pickles as (the generated source, its __dict__) and is rebuilt from them: torch.save(model)
# and copy.deepcopy work; loading needs mgdsl importable, as loading a GraphModule needs torch.fx.

def _unpickle(name: str, code: str, states: str, state: dict) -> MgModule:
    cls = _generated_class(name, code, states)
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj

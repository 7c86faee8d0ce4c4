"""Source-to-source rewrites that the theorems construct: a classic CNN as Mg-ResNet (Theorem 8.3)."""
from __future__ import annotations

from dataclasses import replace

from . import syntax as S
from .diagnostics import Diagnostic, SpecError


def _fresh(base: str, taken: set) -> str:
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}{k}"
    return name


def to_mg_resnet(model: S.Model, ir) -> S.Model:
    """f = chi(relu(f))  ->  f = relu(f) - xi(relu(eta(relu(f)))), xi = delta (8.12), eta = [id, -id](chi - id) (8.13)."""
    from .forms import read
    rd = read(ir)
    names = {ir.instances[o].name for r in rd.roles.values() for o in r["chi"].owners()} \
        if rd.family == "classic-cnn" else set()
    if rd.family != "classic-cnn" or len(names) != 1 or any(r["chi"].coef != 1 for r in rd.roles.values()):
        raise SpecError([Diagnostic(f"{ir.path}: the step is {rd.family}, not a classic CNN step f = chi(relu(f)) "
                                    "with chi one written operator", None,
                                    "Theorem 8.3 rewrites classic CNN steps (8.8)")])
    s, chi_name = rd.state, names.pop()
    chi_def = next(it for it in model.items if isinstance(it, S.OpDef) and it.name == chi_name)
    taken = {it.name for it in model.items if isinstance(it, S.OpDef)}
    xi, eta = _fresh("xi_mg", taken), _fresh("eta_mg", taken)
    index = chi_def.index or ()
    ref = S.RefArg(chi_name, index) if index else S.OpRef(chi_name, None)
    eta_def = S.OpDef(eta, index or None, (S.OpRef("split", None), S.PrimApp("sub_id", (ref,))))
    grid = tuple(ix for ix in index if ix.var == "l") or None
    xi_def = S.OpDef(xi, grid, (S.OpRef("delta", None),))
    f = S.Var(s, None)
    relu = lambda e: S.Apply("relu", None, e)
    step = S.BinOp("-", relu(f), S.Apply(xi, None, relu(S.Apply(eta, None, relu(f)))))
    items = []
    for it in model.items:
        if isinstance(it, S.Equation) and it.kind == "step":
            items += [eta_def, xi_def]
            it = replace(it, assigns=tuple(replace(a, expr=step) if a.name == s else a for a in it.assigns))
        items.append(it)
    header = ((0, f"# {ir.name} rewritten as Mg-ResNet by Theorem 8.3 (mgdsl rewrite --to mg-resnet):"),
              (0, f"# xi = delta-hat (8.12) with delta([X, Y]) = Y - X; eta = [id, -id] . ({chi_name} - id) (8.13)."))
    return S.Model(f"{model.name}_mg_resnet", tuple(items), model.span, comments=header + tuple(model.comments))


def rewrite_text(ir) -> str:
    """The canonical text of the Mg-ResNet that Theorem 8.3 constructs from a classic CNN spec."""
    from .fmt import fmt
    from .syntax import parse
    return fmt(to_mg_resnet(parse(ir.source.text, ir.path), ir))  # the text compiled, not a second read


def max_disagreement(ir, new) -> float:
    """max |a(x) - b(x)| in float64 over two random inputs, b holding a's weights (the rewrite's check)."""
    import torch

    from .lowering import default_dtype, lower_ir
    with default_dtype(torch.float64):
        a, b = lower_ir(ir).eval(), lower_ir(new).eval()
        b.load_state_dict(a.state_dict(), strict=False)
        x = torch.randn(2, *ir.input_ty.shape)
        with torch.no_grad():
            return (a(x) - b(x)).abs().max().item()

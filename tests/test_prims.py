"""The primitive table is the one source of each primitive's facts: walking every entry and every option
value through its typing rule and its lowering, the table's shape, parameter count and MACs are the torch
module's; and the MACs of every shipped spec are what torch's flop counter measures."""
import itertools
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import mgdsl
from helpers import SPECS
from mgdsl.cost import macs
from mgdsl.ir import Instance, Ty
from mgdsl.prims import PRIMS, Call, LowerCtx, PrimError, ceil_half, layer_at
from mgdsl.resolve import Part

CHANNELS = {"u": [4, 4, 6], "f": [6, 6, 6], "classes": [5, 5, 5]}  # c_u != c_f; u changes channels on grid 3


@dataclass
class FakeGrid:
    """Three grids below a finest grid of size n x n; `A` is a fixed laplace instance for the operator arguments."""
    n: int
    J: int = 3

    def __post_init__(self):
        self.sizes = {1: (self.n, self.n)}
        for lvl in (2, 3):
            self.sizes[lvl] = tuple(map(ceil_half, self.sizes[lvl - 1]))
        self.typed = {}

    def chan(self, space, level):
        return CHANNELS[space][(level or 1) - 1]

    def apply(self, label, x):
        lay, y = PRIMS["laplace"].type(PRIMS["laplace"], Call("laplace", (x.space, x.space), {"pad": "zero"}), x,
                                       self)
        self.typed[label] = (lay, x, y)
        return y

    def template(self, label):
        return [Part("restrict", None, opts={"linear": None})]


def _option_values(o):
    if o.flag:
        return [o.default, not o.default]
    if o.values:
        return list(o.values)
    return [o.default, 2 * o.default if o.number is int else 0.5]


def _option_sets(p):
    """Every value of every option once (the others at their defaults), and all non-defaults together."""
    values = {o.key: [1, 2] if o.key == "groups" else _option_values(o) for o in p.options}
    default = {o.key: o.default for o in p.options}
    sets = [default] + [dict(default, **{k: v}) for k, vs in values.items() for v in vs if v != default[k]]
    sets.append({k: next((v for v in vs if v != default[k]), default[k]) for k, vs in values.items()})
    return sets


def _cases():
    for name, p in sorted(PRIMS.items()):
        for opts in _option_sets(p):
            sigs = (("u", "classes"),) if name == "linear" else (("u", "f"), ("f", "f"), ("u", "classes")) \
                if name == "bn" else (("u", "f"), ("f", "f"))
            for n, level, sig in itertools.product((8, 9), (1, 2), sigs):
                yield name, opts, n, level, sig


def _ids(case):
    name, opts, n, level, sig = case
    return f"{name}-{'-'.join(f'{k}={v}' for k, v in opts.items())}-n{n}-grid{level}-{sig[0]}-{sig[1]}"


CASES = list(_cases())


def test_the_table_walk_covers_every_primitive():
    assert {c[0] for c in CASES} == set(PRIMS)


@pytest.mark.parametrize("name", sorted(PRIMS))
def test_every_primitive_shape_params_and_macs_are_the_lowered_modules(name):
    p = PRIMS[name]
    accepted = 0
    for _, opts, n, level, sig in (c for c in CASES if c[0] == name):
        g = FakeGrid(n)
        pooled = name in ("linear", "bn") and sig[1] == "classes"
        space = sig[0] if p.sig else "f"
        x = Ty(space, None, g.chan(space, 1)) if pooled else Ty(space, level, g.chan(space, level), *g.sizes[level])
        refs = ("A",) * p.refs
        try:
            lay, y = p.type(p, Call(name, sig if p.sig else None, opts, refs), x, g)
        except PrimError:
            continue  # refused by the table: the typing stage turns it into a located error
        accepted += 1
        lay.params, lay.klass, lay.in_ty, lay.out_ty = p.params(lay), p.klass(lay), x, y
        built, insts = {}, {}
        if "A" in g.typed:
            from mgdsl.lowering import Stencil
            alay, ax, _ = g.typed["A"]
            built["A"] = Stencil("laplace", ax.channels)
            insts["A"] = Instance("A", "A", (), (), in_ty=ax)
        module = p.lower(lay, LowerCtx(built, insts)).eval()
        assert sum(t.numel() for t in module.parameters()) == p.params(lay), (opts, n, level, sig)
        inp = torch.randn(2, *x.shape)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            out = module(inp)
        assert tuple(out.shape[1:]) == y.shape, (opts, n, level, sig)
        own = counter.get_total_flops() // 2 // 2  # two images; sub_id's chi is counted as chi's own MACs
        assert p.macs(lay, x, y) == own, (opts, n, level, sig)
        assert layer_at(lay, x, g.sizes) == y
        if p.inline:  # the generated forward's inline form computes what the module does
            with torch.no_grad():
                inline = eval(p.inline_code.format(x="inp"), {"F": torch.nn.functional, "inp": inp})
            torch.testing.assert_close(inline, out)
    assert accepted, f"{name}: no option value was accepted"


def _small(path):
    ir = mgdsl.compile_ir(path)
    return mgdsl.compile_ir(path, **{k: v for k, v in {"width": 4, "fwidth": 6, "n": 17}.items() if k in ir.params})


@pytest.mark.parametrize("path", [p for p in SPECS if "imagenet" not in p])
def test_macs_equal_torch_flop_counter(path):
    ir = _small(path)
    model = mgdsl.lower(ir).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, *ir.input_ty.shape))
    want = counter.get_total_flops() // 2
    got = macs(ir)
    assert abs(got.total - want) <= 0.01 * want
    assert got.total == sum(got.by_instance.values())


def test_macs_of_a_rewritten_mg_resnet_count_chi_inside_sub_id(tmp_path):
    """sub_id(chi) (8.13) runs chi: no shipped spec has it, so the Mg-ResNet rewrite of the classic CNN is
    measured against torch's flop counter as the shipped specs are."""
    from mgdsl.cli import main
    out = tmp_path / "rw.mg"
    assert main(["rewrite", "--to", "mg-resnet", "specs/cnn/classic-cnn.mg", "-D", "width=4", "-o", str(out)]) == 0
    test_macs_equal_torch_flop_counter(str(out))


@pytest.mark.parametrize("path,reference", [("specs/table2/resnet18.mg", 0.555e9),
                                            ("specs/table2/mgnet-256-256-pi1.mg", 3.80e9)])
def test_macs_of_the_reference_models(path, reference):
    """Measured by the issue's author with torch's flop counter at full size."""
    assert abs(macs(mgdsl.compile_ir(path)).total - reference) / reference < 0.01


def test_macs_count_each_use_of_a_shared_operator():
    ir = mgdsl.compile_ir("specs/mgnet.mg", width=8)
    m = macs(ir)
    uses = []
    for k in range(1, ir.grids + 1):
        a = ir.instances[f"A[{k}]"]  # conv3(u -> f), applied in the steps and the coarsening (also via Ar[k] in the Table 2 reading)
        per_use = a.out_ty.channels * a.in_ty.channels * 9 * a.in_ty.height * a.in_ty.width
        assert m.by_instance[a.label] == a.uses * per_use
        uses.append(a.uses)
    assert max(uses) > 1


@pytest.mark.parametrize("path", ["specs/mgnet.mg", "specs/cnn/densenet.mg", "specs/multigrid/poisson-w11.mg"])
def test_macs_by_grid_split_each_instance_by_the_grid_its_input_is_on(path):
    """What `mgdsl lsp`'s hover shows per grid: the runs and MACs there add up to the instance's."""
    ir = mgdsl.compile_ir(path)
    m = macs(ir)
    for label, inst in ir.instances.items():
        rows = [v for (lab, _), v in m.by_grid.items() if lab == label]
        assert sum(v[3] for v in rows) == m.by_instance[label], label
        assert sum(v[2] for v in rows) <= inst.uses  # uses also count naming it as an argument: jacobi(A[l], ..)
    if path == "specs/mgnet.mg":
        assert all(sum(v[2] for (lab, _), v in m.by_grid.items() if lab == i.label) == i.uses
                   for i in ir.instances.values())
        x, y, runs, n = m.by_grid["A[2]", 2]  # twice in grid 2's smoothing steps, once via Ar[2] = A[2]
        assert (x.shape, y.shape, runs, n) == ((256, 16, 16), (256, 16, 16), 3, 3 * 256 * 256 * 9 * 16 * 16)


def test_macs_do_not_import_torch():
    r = subprocess.run([sys.executable, "-c",
                        "import sys, mgdsl; from mgdsl.cost import macs; "
                        "macs(mgdsl.compile_ir('specs/multigrid/poisson-v11.mg')); "
                        "assert 'torch' not in sys.modules, 'torch imported'"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_inverse_too_large_on_the_coarsest_grid_hints_at_more_grids_not_at_the_coarsest_grid():
    """`grids 2` at n = 129: inverse(A[J]) is already on the coarsest grid; the hint used to say 'use it on the
    coarsest grid only', which it is. It now says how many grids would make that grid small."""
    from mgdsl import SpecError, compile_spec
    text = open("specs/multigrid/poisson-v11.mg").read().replace("grids auto", "grids 2")
    with pytest.raises(SpecError) as e:
        compile_spec("t.mg", {"n": 129}, text=text)
    (d,) = e.value.diagnostics
    assert d.message == "inverse() on 4225 unknowns is too large (limit 4096)"
    assert d.hint == "grids auto (or more than 2) makes grid 2, the coarsest, small enough"

import re
import shutil
import subprocess
import sys

import pytest

import mgdsl
from helpers import SPECS
from mgdsl.render import picture, render, to_dot

HAS_DOT = shutil.which("dot") is not None


def _ir(path):
    ir = mgdsl.compile_ir(path)
    small = {k: v for k, v in {"width": 16, "fwidth": 16, "n": 33}.items() if k in ir.params}
    return mgdsl.compile_ir(path, **small) if small else ir


@pytest.mark.parametrize("path", SPECS)
def test_structure_of_every_picture(path):
    ir = _ir(path)
    pic = picture(ir)
    source = to_dot([pic], [ir]).source
    # one band per grid
    bands = set(re.findall(r"subgraph cluster_s0_grid_(\d+)", source))
    assert bands == {str(l) for l in range(1, ir.grids + 1)}
    # every used instance is drawn exactly once (per-step instances of one name fold into one box)
    used = {n.inst for n in ir.nodes if n.op == "apply"}
    members = [m for v in pic.vertices.values() if v["kind"] == "op" for m in v["members"]]
    assert sorted(members) == sorted(set(members)) and used <= set(members)
    # folded smoothing boxes carry nu
    for (level, phase, i), g in pic.groups.items():
        if phase == "both":  # a V-cycle smoother folds pre- and post-smoothing into one box
            assert g["nu"] == (ir.nu[level - 1], ir.post[level - 1])
            assert f"× {ir.nu[level - 1]} pre, × {ir.post[level - 1]} post" in source
            continue
        want = (ir.nu if phase == "down" else ir.post)[level - 1]
        assert g["nu"] == want
        assert f"× {want}" in source


def test_shared_operator_is_drawn_once_and_mgnet_folds_nu():
    ir = mgdsl.compile_ir("specs/mgnet.mg")
    pic = picture(ir)
    holders = [vid for vid, v in pic.vertices.items() if "A[2]" in v.get("members", [])]
    assert len(holders) == 1
    assert sum("smoothing × 2" in line for line in to_dot([pic], [ir]).source.splitlines()) == 4
    expanded = picture(ir, expand=True)
    assert len(expanded.groups) == 8  # 4 grids x 2 steps


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz `dot` not installed (.ci/run installs it)")
@pytest.mark.parametrize("path", SPECS)
def test_dot_renders_every_spec_to_svg_without_warnings(path):
    ir = _ir(path)
    r = subprocess.run(["dot", "-Tsvg"], input=to_dot([picture(ir)], [ir]).source.encode(), capture_output=True)
    assert r.returncode == 0 and r.stderr == b"", r.stderr.decode()
    assert r.stdout.startswith(b"<?xml") or b"<svg" in r.stdout[:400]


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz `dot` not installed")
def test_cli_side_by_side_and_ir_view(tmp_path):
    from mgdsl.cli import main
    out = tmp_path / "cmp.svg"
    assert main(["render", "specs/table2/resnet18.mg", "specs/mgnet.mg", "-o", str(out)]) == 0
    text = out.read_text()
    assert "resnet18" in text and "mgnet" in text
    assert main(["render", "specs/mgnet.mg", "--ir", "-o", str(tmp_path / "ir.dot")]) == 0
    assert "digraph" in (tmp_path / "ir.dot").read_text()


def test_without_dot_binary_writes_dot_and_says_how(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    msg = render([mgdsl.compile_ir("specs/mgnet.mg")], str(tmp_path / "m.png"))
    assert (tmp_path / "m.dot").exists() and "apt-get install graphviz" in msg


def test_render_is_fast_and_does_not_import_torch(tmp_path):
    code = ("import sys, time, glob; from mgdsl import compile_ir; from mgdsl.render import picture, to_dot\n"
            "t = time.perf_counter()\n"
            "for p in sorted(glob.glob('specs/**/*.mg', recursive=True)):\n"
            "    ir = compile_ir(p); to_dot([picture(ir)], [ir]).source\n"
            "assert 'torch' not in sys.modules\n"
            "print(time.perf_counter() - t)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    per_spec = float(r.stdout) / len(SPECS)
    assert per_spec < 1.0


RECT = """model rect {
  input x : 3 x 16 x 12
  classes 10
  grids 2
  smooth 2
  space u = [4, 8], f = [4, 8]

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f)
  B[l, i] = relu . bn . conv3(f -> u)
  Pi[l]   = conv3(u -> u, stride 2)
  R[l]    = conv3(f -> f, stride 2)
  fc      = linear(u -> classes)

  init    f = f_in(x); u = 0
  step    u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
"""


def test_the_picture_states_each_grids_size_and_channels_and_each_boxs_parameters(tmp_path):
    """Numbers counted by hand: grid sizes height x width on a 16 x 12 input, the channels of each grid, and
    a folded smoothing box's parameters for all its steps (B[1, i]: 2 x (4*4*9 + 2*4) = 304)."""
    p = tmp_path / "rect.mg"
    p.write_text(RECT)
    ir = mgdsl.compile_ir(str(p))
    source = to_dot([picture(ir)], [ir]).source
    assert "rect  (2,990 params" in source  # 116 + 144 + 304 + 288 + 288 + 576 + 1184 + 90
    assert 'label="grid 1: 16×12, c_u=4, c_f=4"' in source and 'label="grid 2: 8×6, c_u=8, c_f=8"' in source
    assert re.search(r"B\[1, i\]</B> ×2<BR/>.*· 304 params<", source)
    assert re.search(r"B\[2, i\]</B> ×2<BR/>.*· 1\.2k params<", source)  # 2 x (8*8*9 + 2*8) = 1184
    big = mgdsl.compile_ir("specs/table2/resnet18.mg")
    # a 3x3 conv 512 -> 512 with BN: 512*512*9 + 2*512 = 2,360,320
    assert "f:512 → f:512 · affine · 2.36M params" in to_dot([picture(big)], [big]).source


@pytest.mark.skipif(not HAS_DOT, reason="needs Graphviz's dot")
def test_the_output_format_follows_the_file_name(tmp_path):
    from mgdsl.cli import main
    for name, magic in (("m.png", b"\x89PNG"), ("m.svg", b"<?xml"), ("m.pdf", b"%PDF")):
        assert main(["render", "specs/mgnet.mg", "-o", str(tmp_path / name)]) == 0
        assert (tmp_path / name).read_bytes().startswith(magic), name


@pytest.mark.parametrize("path", SPECS)
def test_every_parameter_is_drawn_exactly_once(path):
    """Each instance with parameters is in one drawn box, and the boxes' params add up to the model's."""
    ir = _ir(path)
    pic = picture(ir)
    ops = [v for v in pic.vertices.values() if v["kind"] == "op"]
    members = [m for v in ops for m in v["members"]]
    assert sorted(members) == sorted(set(members))
    assert {label for label, i in ir.instances.items() if i.params} <= set(members)
    assert sum(v["params"] for v in ops) == ir.total_params


def test_mgnet_shows_the_shared_eta_once_with_its_parameters(capsys):
    """B[l, i] = relu . bn . eta[l] . relu . bn: eta[l] (3x3, 256 -> 256: 589,824 params) is drawn once per
    grid, in the smoothing box, and the drawn params are what `compile --json` counts."""
    import json
    from mgdsl.cli import main
    from mgdsl.render import _fmt_params
    assert main(["compile", "specs/mgnet.mg", "--json"]) == 0
    total = json.loads(capsys.readouterr().out)["params"]
    ir = mgdsl.compile_ir("specs/mgnet.mg")
    pic = picture(ir)
    assert sum(v["params"] for v in pic.vertices.values() if v["kind"] == "op") == total
    eta = [v for v in pic.vertices.values() if v["kind"] == "op" and v["members"] == ["eta[1]"]]
    assert len(eta) == 1 and eta[0]["params"] == 589_824 and f"{_fmt_params(589_824)} params" in eta[0]["label"]
    group = next(g for (level, _, _), g in pic.groups.items() if level == 1)
    assert pic.instances["eta[1]"] in group["members"]  # beside the B[1, i] that use it
    assert (pic.instances["eta[1]"], pic.instances["B[1, 1]"]) in pic.shares


def _band_boxes(source: str) -> dict[int, tuple[float, float]]:
    """grid -> (bottom, top) of its band as dot lays it out (y grows upwards)."""
    import json
    r = subprocess.run(["dot", "-Tjson"], input=source.encode(), capture_output=True, check=True)
    out = {}
    for o in json.loads(r.stdout).get("objects", []):
        m = re.fullmatch(r"cluster_s0_grid_(\d+)", o.get("name", ""))
        if m:
            x0, y0, x1, y1 = map(float, o["bb"].split(","))
            out[int(m.group(1))] = (y0, y1)
    return out


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz `dot` not installed (.ci/run installs it)")
@pytest.mark.parametrize("path", ["specs/variants/mgnet-vcycle.mg", "specs/multigrid/poisson-w11.mg",
                                  "specs/mgnet.mg"])
def test_grids_are_drawn_in_order_fine_to_coarse(path):
    """Each grid's band lies wholly below the finer one's, also in a V- or W-cycle whose way back up used to
    pull grid 2 beside grid 3."""
    ir = _ir(path)
    boxes = _band_boxes(to_dot([picture(ir)], [ir]).source)
    assert sorted(boxes) == list(range(1, ir.grids + 1))
    for level in range(1, ir.grids):
        assert boxes[level + 1][1] < boxes[level][0], (level, boxes)


def test_the_dot_file_is_the_same_bytes_under_any_hash_seed(tmp_path):
    """A V-cycle's invisible ranking edges were emitted in set order: the .dot changed from run to run."""
    outs = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"v{seed}.dot"
        subprocess.run([sys.executable, "-m", "mgdsl", "render", "specs/variants/mgnet-vcycle.mg", "-o", str(out)],
                       check=True, capture_output=True, env={**__import__("os").environ, "PYTHONHASHSEED": seed})
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


def test_an_output_that_cannot_be_written_is_exit_2_not_an_internal_error(tmp_path, capsys):
    """-o in a missing folder, a folder, or with a suffix render cannot write: one line, exit 2, nothing written."""
    from mgdsl.cli import main
    for out in (tmp_path / "no" / "m.svg", tmp_path, tmp_path / "m.txt"):
        assert main(["render", "specs/mgnet.mg", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("mgdsl: error: -o ") == 3 and "internal error" not in err and not list(tmp_path.iterdir())

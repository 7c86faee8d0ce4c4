"""mgdsl export: standalone PyTorch source and ONNX that compute what mgdsl.load computes; pickling; torch.export."""
import ast
import copy
import importlib.util
import io
import json
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from helpers import SPECS
import mgdsl
from mgdsl import SpecError, compile_spec
from mgdsl.cli import main
from mgdsl.export import class_name, export
from mgdsl.lowering import lower_ir

SMALL = {"width": 4, "fwidth": 8, "n": 17}
MAX_PARAMS = 10_000_000  # mgnet-imagenet has no width param (71M at 224x224): too large for a unit test


def small_ir(path):
    params = {k: v for k, v in SMALL.items() if k in compile_spec(path).params}
    return compile_spec(path, params)


def randomize(model, seed=0):
    """Non-default weights and BN statistics, so that a weight that does not load shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                low = 0.5 if name.endswith("running_var") else -0.5
                t.copy_(low + torch.rand(t.shape, generator=g, dtype=t.dtype))
    return model.eval()


def randomize_each_entry(model, seed=0) -> dict:
    """A state_dict whose every entry is drawn on its own, also where the model shares one tensor under
    several names (eta[l] in each of a grid's B's), loaded into the model: the last entry of a shared tensor
    wins, so a copy that should share its tensor but does not keeps another value and changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, t in model.state_dict().items():
        low = 0.5 if name.endswith("running_var") else -0.5
        state[name] = low + torch.rand(t.shape, generator=g, dtype=t.dtype) if t.is_floating_point() else t.clone()
    model.load_state_dict(state)
    return state


def shared_names(model) -> list[list[str]]:
    """The state_dict names that are one tensor, in groups of two or more."""
    groups = {}
    for name, t in model.state_dict(keep_vars=True).items():
        groups.setdefault(t.data_ptr(), []).append(name)
    return sorted(g for g in groups.values() if len(g) > 1)


# The exported files run in a fresh interpreter where `import mgdsl` fails: they must need torch only.
RUNNER = textwrap.dedent("""
    import importlib.util, json, sys
    sys.modules["mgdsl"] = None  # mgdsl is not importable here
    try:
        import mgdsl  # noqa: F401
        raise SystemExit("mgdsl is importable")
    except ImportError:
        pass
    import torch
    torch.set_num_threads(1)
    out = {}
    for job in json.load(open(sys.argv[1])):
        spec = importlib.util.spec_from_file_location(job["module"], job["py"])
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        model = getattr(mod, job["cls"])()
        keys = list(model.state_dict())
        groups = {}
        for name, t in model.state_dict(keep_vars=True).items():
            groups.setdefault(t.data_ptr(), []).append(name)
        shared = sorted(g for g in groups.values() if len(g) > 1)
        model.load_state_dict(torch.load(job["pt"], weights_only=True))
        model.eval()
        with torch.no_grad():
            y = model(torch.load(job["x"]))
        ref = torch.load(job["y"])
        out[job["name"]] = {"keys": keys, "shared": shared, "err": (y - ref).abs().max().item(), "scale": ref.abs().max().item(),
                            "modules": sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] == "mgdsl")}
    json.dump(out, open(sys.argv[2], "w"))
""")


def run_standalone(jobs, tmp_path) -> dict:
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    (tmp_path / "runner.py").write_text(RUNNER)
    r = subprocess.run([sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "jobs.json"),
                        str(tmp_path / "out.json")], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((tmp_path / "out.json").read_text())


def test_exported_source_round_trips_random_weights_for_every_shipped_spec(tmp_path):
    jobs, refs = [], {}
    for k, path in enumerate(SPECS):
        ir = small_ir(path)
        if ir.total_params > MAX_PARAMS:
            continue
        model = lower_ir(ir).eval()
        state = randomize_each_entry(model, seed=k)
        x = torch.randn(2, *ir.input_ty.shape, generator=torch.Generator().manual_seed(k))
        with torch.no_grad():
            y = model(x)
        base = tmp_path / f"m{k}"
        torch.save(state, f"{base}.pt")  # shared entries differ: the exported module must share as mgdsl does
        export(ir, str(base), formats="py")
        torch.save(x, f"{base}.x")
        torch.save(y, f"{base}.y")
        refs[path] = list(model.state_dict()), shared_names(model)
        jobs.append({"name": path, "module": f"m{k}", "py": f"{base}.py", "pt": f"{base}.pt", "x": f"{base}.x",
                     "y": f"{base}.y", "cls": class_name(ir.name)})
    assert len(jobs) >= len(SPECS) - 1  # only the ImageNet model is left out
    got = run_standalone(jobs, tmp_path)
    for path, r in got.items():
        assert r["modules"] == []
        assert r["keys"] == refs[path][0], path  # mgdsl.load's state_dict keys, in mgdsl.load's order
        assert r["shared"] == refs[path][1], path  # the same tensors shared under the same names
        assert r["err"] <= 1e-5 * max(1.0, r["scale"]), (path, r["err"])


def test_exported_source_imports_only_torch(tmp_path):
    for path in ("specs/mgnet.mg", "specs/multigrid/poisson-v11.mg", "specs/cnn/mg-resnet.mg"):
        (py,) = export(small_ir(path), str(tmp_path / "m"), formats="py")
        tree = ast.parse(py.read_text())
        roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert roots <= {"torch", "__future__"}, (path, roots)


def test_exported_class_is_named_after_the_model_and_keeps_spec_names(tmp_path):
    (py,) = export(small_ir("specs/mgnet.mg"), str(tmp_path / "mgnet"), formats="py")
    text = py.read_text()
    assert "class Mgnet(nn.Module):" in text and "def __init__(self):" in text
    assert 'self.B = nn.ModuleDict({' in text and "u_2_1 = " in text  # spec names; the paper's u^{2,1}
    assert class_name("mgnet_256_256_pi1") == "Mgnet256256Pi1"


def test_onnx_matches_eval_mode_within_1e_4(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    for k, path in enumerate(("specs/mgnet.mg", "specs/multigrid/poisson-v11.mg")):
        ir = small_ir(path)
        model = randomize(lower_ir(ir), seed=k)
        pt = tmp_path / f"w{k}.pt"
        torch.save(model.state_dict(), pt)
        (onnx_path,) = export(ir, str(tmp_path / f"m{k}"), weights=str(pt), formats="onnx")
        x = torch.randn(3, *ir.input_ty.shape, generator=torch.Generator().manual_seed(1))  # batch 3: free batch
        with torch.no_grad():
            ref = model(x).numpy()
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        assert got.shape == ref.shape and abs(got - ref).max() <= 1e-4, (path, abs(got - ref).max())


def test_lowered_module_survives_torch_save_pickle_and_deepcopy():
    model = randomize(mgdsl.load("mgnet", width=4))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    copies = [torch.load(buf, weights_only=False), pickle.loads(pickle.dumps(model)), copy.deepcopy(model)]
    for m in copies:
        assert type(m).__name__ == type(model).__name__ and m.code == model.code
        with torch.no_grad():
            assert torch.equal(m(x), ref)
        assert m.B["2"]["1"][2] is m.eta["2"]  # sharing survives: one module, not two copies
        assert m.forward_states(x)["output"].shape == ref.shape


@pytest.mark.parametrize("path", ["specs/mgnet.mg", "specs/multigrid/poisson-v11.mg"])
def test_torch_export_captures_a_lowered_module(path):
    ir = small_ir(path)
    model = randomize(lower_ir(ir))
    x = torch.randn(2, *ir.input_ty.shape)
    prog = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.allclose(prog.module()(x), model(x), atol=1e-6)


def test_export_cli_round_trips_a_training_run(tmp_path, capsys):
    """Trained weights from a real (one-epoch, digits) run: the run's -D values and data shape are used."""
    run = tmp_path / "run"
    assert main(["compile", "mgnet", "-D", "width=4", "-D", "nu=1", "--train", "digits", "--epochs", "1",
                 "--batch-size", "64", "--out", str(run)]) == 0
    capsys.readouterr()
    out = tmp_path / "digits_mgnet"
    assert main(["export", "mgnet", "--weights", str(run), "-o", str(out), "--format", "py"]) == 0
    assert capsys.readouterr().out.split() == [f"{out}.py", f"{out}.pt", f"{out}.classes.json"]
    ir = compile_spec("mgnet", {"width": 4, "nu": 1})
    from mgdsl.training import adapt
    ir = adapt(ir, (1, 8, 8), 10)
    from mgdsl.cost import macs
    assert json.loads((run / "summary.json").read_text())["macs"] == macs(ir).total > 0
    model = lower_ir(ir)
    model.load_state_dict(torch.load(run / "model.pt", weights_only=True))
    model.eval()
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        y = model(x)
    torch.save(x, tmp_path / "x")
    torch.save(y, tmp_path / "y")
    note = " ".join(out.with_suffix(".py").read_text().split())
    assert "Trained on digits: inputs are images in [0, 1] normalised per channel" in note
    norm = json.loads((run / "config.json").read_text())["normalize"]  # the statistics the run trained with
    mean, std = (", ".join(f"{v:.6g}" for v in norm[k]) for k in ("mean", "std"))
    assert f"mean = ({mean}) and std = ({std})" in note and mean != std
    got = run_standalone([{"name": "run", "module": "digits_mgnet", "py": f"{out}.py", "pt": f"{out}.pt",
                           "x": str(tmp_path / "x"), "y": str(tmp_path / "y"), "cls": "Mgnet"}], tmp_path)
    assert got["run"]["err"] <= 1e-5


@pytest.mark.parametrize("args,words", [
    (["--weights", "no/such/model.pt"], "no such file"),
    (["--weights", "{tmp}"], "model.pt: no such weights file (in the folder"),  # a folder without model.pt
    (["-D", "width=8", "--weights", "{pt}"], "does not fit this model"),
    (["-o", "no/such/folder/out"], "does not exist"),
])
def test_export_errors_are_located_exit_2_and_write_nothing(args, words, tmp_path, capsys):
    pt = tmp_path / "w4.pt"
    torch.save(mgdsl.load("mgnet", width=4).state_dict(), pt)
    args = [a.replace("{pt}", str(pt)).replace("{tmp}", str(tmp_path)) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out")]
    assert main(["export", "mgnet", "--format", "py", *args]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w4.pt"]


def test_without_onnx_the_error_names_the_export_extra_and_all(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript raises ImportError
    with pytest.raises(SpecError) as e:
        export(small_ir("specs/mgnet.mg"), str(tmp_path / "m"), formats="onnx")
    (d,) = e.value.diagnostics
    assert "onnx" in d.message and "'mgdsl[export]'" in d.hint and "'mgdsl[all]'" in d.hint


# The exported model with its run's preprocessing, fed raw uint8 test images in a process without mgdsl.
RAW_RUNNER = textwrap.dedent("""
    import importlib.util, json, sys
    sys.modules["mgdsl"] = None  # mgdsl is not importable here
    import numpy as np
    import torch
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("exported", sys.argv[1])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.load()  # the .pt beside the .py
    z = np.load(sys.argv[2])
    with torch.no_grad():
        logits = model(torch.from_numpy(z["x"]))
    print(json.dumps({"hits": int((logits.argmax(1).numpy() == z["y"]).sum()), "classes": mod.CLASSES,
                      "logits": logits.tolist()}))
""")


def test_an_exported_run_takes_raw_uint8_images_and_scores_the_runs_own_accuracy(tmp_path, capsys):
    """ONNX (onnxruntime) and the .py (python -I, mgdsl blocked, another cwd) on uint8 N x H x W x C test images."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    for name, n in (("train", 64), ("test", 30)):  # label = the bright colour channel; named classes
        y = rng.integers(0, 3, n)
        x = (rng.random((n, 12, 12, 3)) * 100).astype(np.uint8)
        x[np.arange(n), :, :, y] += 100
        np.savez(tmp_path / f"{name}.npz", x=x, y=y, classes=np.array(["red", "green", "blue"]))
    run = tmp_path / "run"
    assert main(["compile", "mgnet", "-D", "width=4", "-D", "nu=1", "--train", str(tmp_path / "train.npz"), "--test",
                 str(tmp_path / "test.npz"), "--flip", "--epochs", "1", "--batch-size", "16", "--threads", "1",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["tta"] and ev["n"] == 30  # --flip: the run is scored with flip TTA, and so is the export
    z = np.load(tmp_path / "test.npz")
    want = round(ev["top1"] * ev["n"])
    ref = mgdsl.load_run(run).logits(z["x"])
    out = tmp_path / "exp" / "colours"
    out.parent.mkdir()
    assert main(["export", str(run), "-o", str(out)]) == 0
    assert capsys.readouterr().out.split() == [f"{out}{s}" for s in (".py", ".pt", ".onnx", ".classes.json")]
    assert json.loads(out.with_suffix(".classes.json").read_text()) == ["red", "green", "blue"]
    sess = ort.InferenceSession(f"{out}.onnx", providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.type == "tensor(uint8)" and inp.shape[1:] == [12, 12, 3]
    (got,) = sess.run(None, {inp.name: z["x"]})
    assert int((got.argmax(1) == z["y"]).sum()) == want and abs(got - ref.numpy()).max() < 1e-4
    (tmp_path / "runner.py").write_text(RAW_RUNNER)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run([sys.executable, "-I", str(tmp_path / "runner.py"), f"{out}.py", str(tmp_path / "test.npz")],
                       capture_output=True, text=True, cwd=elsewhere)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert res["hits"] == want and res["classes"] == ["red", "green", "blue"]
    assert abs(np.array(res["logits"]) - ref.numpy()).max() < 1e-5
    # --raw: today's export, the network alone on normalised float N x C x H x W (the class names still ship)
    assert main(["export", "mgnet", "--weights", str(run), "--raw", "-o", str(tmp_path / "raw"), "--format",
                 "py"]) == 0
    text = (tmp_path / "raw.py").read_text()
    assert "CLASSES = [" in text and "def load(" not in text and "MEAN" not in text


def test_export_of_a_run_folder_refuses_other_d_values_and_writes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert main(["export", str(run), "-D", "width=8", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "-D with a run folder" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_export_to_a_py_name_writes_that_file_whose_class_starts_from_mgdsls_init(tmp_path, capsys):
    """`-o net.py` writes net.py (not net.py.py); the exported class, trained from scratch, starts from
    mgdsl's Kaiming fan-out normal init: the stem conv3(x -> f) at width 16 has std sqrt(2 / (16 * 9)), not
    the fan-in sqrt(2 / 27)."""
    import importlib.util
    assert main(["export", "mgnet", "-D", "width=16", "-o", str(tmp_path / "net.py"), "--format", "py"]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "net.py")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.py"]
    spec = importlib.util.spec_from_file_location("net", tmp_path / "net.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    w = mod.Mgnet().state_dict()["f_in.0.weight"]  # 16 x 3 x 3 x 3
    assert w.std().item() == pytest.approx((2 / (16 * 9)) ** 0.5, rel=0.15)


def test_an_exported_runs_load_refuses_grey_float_or_other_size_images(tmp_path, capsys):
    """OUT.py's load() takes only the run's uint8 N x H x W x C: grey, float or 16x16 is an error, not a guess."""
    rng = np.random.default_rng(0)
    for name, n in (("train", 16), ("test", 8)):
        np.savez(tmp_path / f"{name}.npz", x=(rng.random((n, 12, 12, 3)) * 255).astype(np.uint8),
                 y=rng.integers(0, 3, n))
    run, out = tmp_path / "run", tmp_path / "m"
    assert main(["compile", "mgnet", "-D", "width=4", "-D", "nu=1", "--train", str(tmp_path / "train.npz"), "--test",
                 str(tmp_path / "test.npz"), "--epochs", "1", "--batch-size", "8", "--threads", "1",
                 "--out", str(run)]) == 0
    assert main(["export", str(run), "-o", str(out), "--format", "py"]) == 0
    capsys.readouterr()
    spec = importlib.util.spec_from_file_location("m_exported", f"{out}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.load()
    assert model(torch.zeros(2, 12, 12, 3, dtype=torch.uint8)).shape == (2, 3)
    for bad in (torch.zeros(1, 12, 12, 1, dtype=torch.uint8), torch.rand(1, 12, 12, 3),
                torch.zeros(1, 16, 16, 3, dtype=torch.uint8)):
        with pytest.raises(ValueError, match=r"expected uint8 images N x 12 x 12 x 3"):
            model(bad)

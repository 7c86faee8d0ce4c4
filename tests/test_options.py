"""Every option a user passes changes what it claims to change (not only that it is accepted).

Training flags are observed from outside the training code: torch's global module hooks see the
activations' dtype and memory format, and a spy on torch.compile sees what gets compiled. The one real
torch.compile of the suite is in test_lower.py; here the spy stands in for it.
"""
import json

import numpy as np
import pytest
import torch

import mgdsl
from mgdsl.cli import main
from mgdsl.solve import solve

from launch import report, torchrun

V11 = "specs/multigrid/poisson-v11.mg"

# ------------------------------------------------------------------ -D name=value (a name-valued param)

# the paper's restriction stencils, typed from (4.13), (4.14) and (4.15)
K_R = {"bilinear": [[0.25, 0.5, 0.25], [0.5, 1, 0.5], [0.25, 0.5, 0.25]],
       "linear": [[0, 0.5, 0.5], [0.5, 1, 0.5], [0.5, 0.5, 0]],
       "average": [[1 / 9] * 3] * 3}


@pytest.mark.parametrize("kr", sorted(K_R))
def test_named_param_selects_the_restriction_stencil(kr):
    """R[1] applied to every fine-grid unit vector: the row of the centre coarse point is K_R, to float64
    round-off when the model is built in float64 (1/9 is not a float32 number)."""
    from mgdsl.lowering import default_dtype
    n = 9
    with default_dtype(torch.float64):
        model = mgdsl.load(V11, n=n, kr=kr)
    R = model.instance("R[1]")
    eye = torch.eye(n * n, dtype=torch.float64).reshape(n * n, 1, n, n)
    with torch.no_grad():
        cols = R(eye)                            # (fine points, 1, 5, 5)
    row = cols[:, 0, 2, 2].reshape(n, n)          # coarse (2, 2) sits on fine (4, 4)
    want = torch.zeros(n, n, dtype=torch.float64)
    want[3:6, 3:6] = torch.tensor(K_R[kr], dtype=torch.float64)
    torch.testing.assert_close(row, want, atol=1e-15, rtol=0)


def test_named_param_on_the_command_line_reaches_the_solver(capsys):
    hist = {}
    for kr in ("bilinear", "linear"):
        assert main(["solve", V11, "--n", "17", "--json", "-D", f"kr={kr}"]) == 0
        hist[kr] = json.loads(capsys.readouterr().out)["residuals"]
    assert hist["bilinear"] != hist["linear"]
    lib = solve(mgdsl.compile_ir(V11, n=17, kr="linear"), 17)["residuals"]
    assert hist["linear"] == pytest.approx(lib, rel=1e-12)


# ------------------------------------------------------------------ solve --rhs, --dtype

def _laplace(u: np.ndarray) -> np.ndarray:
    """The 5-point -Laplace of (5.4) with zero boundary values, written out."""
    p = np.pad(u, 1)
    return 4 * u - p[:-2, 1:-1] - p[2:, 1:-1] - p[1:-1, :-2] - p[1:-1, 2:]


@pytest.mark.parametrize("kind,norm", [("ones", lambda n: n), ("sin", lambda n: (n + 1) / 2)])
def test_rhs_option_sets_the_right_hand_side(kind, norm, capsys):
    """|f| is the first residual: n for ones, (n + 1) / 2 for sin(pi x) sin(pi y) on the interior points."""
    n = 17
    assert main(["solve", V11, "--n", str(n), "--json", "--rhs", kind]) == 0
    res = json.loads(capsys.readouterr().out)["residuals"]
    assert res[0] == pytest.approx(norm(n), rel=1e-12)


def test_rhs_ones_is_solved():
    n = 17
    u = solve(mgdsl.compile_ir(V11, n=n), n, tol=1e-12, rhs_kind="ones")["u"][0, 0].numpy()
    np.testing.assert_allclose(_laplace(u), np.ones((n, n)), atol=1e-9)


def test_rhs_sin_is_the_lowest_eigenvector():
    """sin(pi x) sin(pi y) is an eigenvector of the 5-point Laplacian: u = f / (4 (1 - cos(pi h)))."""
    n = 17
    out = solve(mgdsl.compile_ir(V11, n=n), n, tol=1e-12, rhs_kind="sin")
    t = np.sin(np.pi * np.arange(1, n + 1) / (n + 1))
    f = np.outer(t, t)
    np.testing.assert_allclose(out["u"][0, 0].numpy(), f / (4 * (1 - np.cos(np.pi / (n + 1)))), atol=1e-10)


def test_dtype_option_sets_the_solver_precision(capsys):
    """float32 stalls near its round-off (~1e-7 relative); float64 reaches 1e-12."""
    n = 17
    assert solve(mgdsl.compile_ir(V11, n=n), n, dtype="float32", max_cycles=2)["u"].dtype == torch.float32
    assert solve(mgdsl.compile_ir(V11, n=n), n, max_cycles=2)["u"].dtype == torch.float64
    common = ["solve", V11, "--n", str(n), "--json", "--tol", "1e-12", "--max-cycles", "40"]
    assert main(common + ["--dtype", "float64"]) == 0
    r64 = json.loads(capsys.readouterr().out)["residuals"]
    assert r64[-1] <= 1e-12 * r64[0]
    assert main(common + ["--dtype", "float32"]) == 1  # not converged: exit 1
    r32 = json.loads(capsys.readouterr().out)["residuals"]
    assert min(r32) > 1e-10 * r32[0]


# ------------------------------------------------------------------ training flags

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("opt")
    rng = np.random.default_rng(0)
    for name, n in (("train", 32), ("test", 16)):
        np.savez(d / f"{name}.npz", x=rng.integers(0, 255, (n, 8, 8, 3)).astype(np.uint8), y=rng.integers(0, 3, n))
    return d


class _CompileSpy(torch.nn.Module):
    """Stands in for torch.compile's result: counts the forwards that go through the compiled module."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, *a, **k):
        self.calls += 1
        return self.inner(*a, **k)


def _observed_run(data, out, *flags):
    """One tiny training epoch; what every Conv2d saw in training mode, and what torch.compile was given."""
    seen, compiled = [], []

    def pre(mod, args):
        if isinstance(mod, torch.nn.Conv2d) and mod.training:
            x = args[0]
            seen.append({"in_dtype": x.dtype, "cin": x.shape[1], "k": mod.kernel_size[0],
                         "in_cl": x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1,
                         "w_cl": mod.weight.is_contiguous(memory_format=torch.channels_last)})

    def post(mod, args, out):
        if isinstance(mod, torch.nn.Conv2d) and mod.training:
            seen[-1]["out_dtype"] = out.dtype

    def spy_compile(model, *a, **k):
        compiled.append(_CompileSpy(model))
        return compiled[-1]

    def spy_module_compile(self, *a, **k):
        compiled.append(self)

    from torch.nn.modules import module as M
    h1, h2 = M.register_module_forward_pre_hook(pre), M.register_module_forward_hook(post)
    mp = pytest.MonkeyPatch()
    mp.setattr(torch, "compile", spy_compile)
    mp.setattr(torch.nn.Module, "compile", spy_module_compile)
    try:
        rc = main(["compile", "specs/mgnet.mg", "-D", "width=4", "-D", "nu=1", "--train", str(data / "train.npz"),
                   "--test", str(data / "test.npz"), "--epochs", "1", "--batch-size", "16", "--no-augment",
                   "--out", str(out), *flags])
    finally:
        h1.remove()
        h2.remove()
        mp.undo()
    assert rc == 0
    assert seen, "no convolution ran in training mode"
    return seen, compiled


@pytest.fixture(scope="module")
def plain(data):
    return _observed_run(data, data / "plain")


@pytest.fixture(scope="module")
def flagged(data):
    return _observed_run(data, data / "flagged", "--amp", "--channels-last", "--compile")


def test_amp_runs_convolutions_in_bfloat16(plain, flagged):
    assert {s["out_dtype"] for s in plain[0]} == {torch.float32}
    assert {s["out_dtype"] for s in flagged[0]} == {torch.bfloat16}


def test_channels_last_reaches_the_weights(plain, flagged):
    """3x3 weights with more than one input channel (the others are channels-last either way).

    The batch itself is channels-last in memory with or without the flag (NHWC data permuted to NCHW
    keeps its strides), so only the weights tell the two runs apart."""
    assert not any(s["w_cl"] for s in plain[0] if s["k"] > 1 and s["cin"] > 1)
    assert all(s["w_cl"] for s in flagged[0] if s["k"] > 1 and s["cin"] > 1)
    images = [s for s in flagged[0] if s["cin"] == 3]
    assert images and all(s["in_cl"] for s in images)


def test_compile_trains_through_the_compiled_module(plain, flagged):
    assert plain[1] == []
    assert len(flagged[1]) >= 1
    spies = [c for c in flagged[1] if isinstance(c, _CompileSpy)]
    if spies:  # torch.compile(model): the training forwards go through what it returned (2 steps of 16)
        assert sum(s.calls for s in spies) >= 2


# ------------------------------------------------------------------ --sync-bn (torchrun)

def _torchrun(args, nproc=2):
    return torchrun(["-m", "mgdsl.cli", *args], nproc=nproc)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="SyncBatchNorm runs on GPUs only; needs 2 CUDA devices")
def test_sync_bn_gives_the_global_batch_statistics_of_one_process(data, tmp_path):
    """With --sync-bn, 2 processes with 8 images each update BN exactly as 1 process with all 16 does."""
    common = ["compile", "specs/mgnet.mg", "-D", "width=4", "-D", "nu=1", "--train", str(data / "train.npz"),
              "--test", str(data / "test.npz"), "--epochs", "1", "--batch-size", "16", "--no-augment",
              "--device", "cuda"]
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    r = _torchrun(common + ["--sync-bn", "--out", str(tmp_path / "two")])
    assert r.returncode == 0, report(r)
    a = torch.load(tmp_path / "one" / "model.pt", map_location="cpu")
    b = torch.load(tmp_path / "two" / "model.pt", map_location="cpu")
    for k in a:
        if "running" in k:
            torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


def test_sync_bn_on_cpu_is_refused_with_a_clear_message(data, tmp_path, monkeypatch, capsys):
    """What torchrun gives each process (RANK, WORLD_SIZE, LOCAL_RANK) with --sync-bn on CPU: refused before
    any process group is joined, exit 2, one message naming the flag, nothing written (torch's SyncBatchNorm
    runs on GPUs only). In-process: a torchrun launch costs ~30 s on two busy cores."""
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    rc = main(["compile", "specs/mgnet.mg", "-D", "width=4", "-D", "nu=1", "--train", str(data / "train.npz"),
               "--test", str(data / "test.npz"), "--epochs", "1", "--batch-size", "16", "--device", "cpu",
               "--sync-bn", "--out", str(tmp_path / "sb")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "internal error" not in err and "Traceback" not in err and "--sync-bn" in err
    assert "hint: drop --sync-bn on CPU" in err  # what to do instead
    assert not (tmp_path / "sb" / "model.pt").exists()

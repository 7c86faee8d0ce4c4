"""The package as users install it: specs by name, the wheel's contents, and the wheel run outside the repo."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import ROOT
import mgdsl
from mgdsl import SpecError, compile_spec
from mgdsl.cli import main
from mgdsl.library import bundled, grammar_text, spec_path

SPEC_FILES = sorted(p.relative_to(ROOT / "specs").as_posix() for p in (ROOT / "specs").rglob("*.mg"))


def test_bundled_lists_every_spec_of_the_repository_by_name():
    assert sorted(s.name + ".mg" for s in bundled()) == SPEC_FILES
    assert bundled()[0].name == "mgnet" or "/" not in bundled()[0].name  # top level first


def test_a_name_a_file_name_and_a_readme_path_all_find_the_bundled_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the repository: no specs/ folder here
    want = str(ROOT / "specs" / "table2" / "resnet18.mg")
    for spec in ("table2/resnet18", "table2/resnet18.mg", "specs/table2/resnet18.mg"):
        assert spec_path(spec) == want
    assert compile_spec("table2/resnet18").total_params == 11_173_962


def test_an_existing_path_wins_over_a_bundled_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mgnet").write_text("model mine {\n  input x : 1 x 4 x 4\n  grids 1\n  space f = 2\n"
                                    "  stem = conv3(x -> f)\n  init f = stem(x)\n  output f\n}\n")
    assert compile_spec("mgnet").name == "mine"


def test_an_unknown_name_is_a_one_line_error_with_a_suggestion_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError):
        spec_path("mgnett")
    assert main(["compile", "table2/resnet-18"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "table2/resnet-18: error: no such file or bundled spec: table2/resnet-18"
    assert "did you mean 'table2/resnet18'?" in err and "Traceback" not in err


def test_grammar_comes_from_grammars_folder():
    assert grammar_text() == (ROOT / "grammars" / "mg.lark").read_text()


def test_list_prints_one_line_per_bundled_spec_with_its_params(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]
    assert len(lines) == len(SPEC_FILES)
    row = next(line.split() for line in lines if line.startswith("table2/resnet18 "))
    assert row[1] == "11,173,962"


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"mgdsl {mgdsl.__version__}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the project (the build leaves nothing in the repository)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("mgdsl", "grammars", "specs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(out), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("mgdsl-*.whl")
    return whl


def test_wheel_carries_the_grammar_every_spec_and_the_entry_points(wheel):
    assert wheel.name.startswith(f"mgdsl-{mgdsl.__version__}-")
    z = zipfile.ZipFile(wheel)
    names = set(z.namelist())
    assert z.read("mgdsl/grammars/mg.lark") == (ROOT / "grammars" / "mg.lark").read_bytes()
    for rel in SPEC_FILES:
        assert z.read(f"mgdsl/specs/{rel}") == (ROOT / "specs" / rel).read_bytes(), rel
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "mgdsl").rglob("*.py")}
    assert modules - names == set(), "modules missing from the wheel (pyproject.toml packages)"
    for fam in sorted((ROOT / "mgdsl" / "families").glob("*.mg")):
        assert f"mgdsl/families/{fam.name}" in names
    eps = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "mgdsl = mgdsl.cli:main" in eps and "mg = mgdsl.lexer:MgLexer" in eps


def test_unpacked_wheel_compiles_and_loads_by_name_outside_the_repository(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = ("import json, mgdsl, mgdsl.cli, sys\n"
            f"assert mgdsl.__file__.startswith({str(site)!r}), mgdsl.__file__\n"
            "assert mgdsl.cli.main(['compile', 'table2/mgnet-256-256-pi1', '--json']) == 0\n"
            "m = mgdsl.load('mgnet', width=8)\n"
            "print(sum(p.numel() for p in m.parameters()))\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    r = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '"params": 8868618' in r.stdout and str(site / "mgdsl" / "specs") in r.stdout
    assert int(r.stdout.split()[-1]) == compile_spec("mgnet", {"width": 8}).total_params


def test_the_all_extra_holds_every_extra_a_user_needs():
    """`pip install 'mgdsl[all]'` installs export, highlight and train (and lsp): one line instead of a failure
    per missing extra."""
    import re
    import tomllib
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (ref,) = extras["all"]
    named = set(re.fullmatch(r"mgdsl\[([\w,-]+)\]", ref).group(1).split(","))
    assert {"export", "highlight", "train"} <= named and named - {"lsp"} <= set(extras)


def test_every_missing_extra_hint_is_the_one_that_names_all():
    """The fix for a missing optional package is spelled once (diagnostics.install_hint), so each names
    mgdsl[all]; no module writes its own `pip install`."""
    from mgdsl.diagnostics import install_hint
    assert "pip install 'mgdsl[train]'" in install_hint("train") and "'mgdsl[all]'" in install_hint("train")
    own = [f"{p.relative_to(ROOT)}:{n}" for p in sorted((ROOT / "mgdsl").rglob("*.py"))
           for n, line in enumerate(p.read_text().splitlines(), 1)
           if "pip install" in line and p.name != "diagnostics.py" and "help=" not in line]
    assert own == []


def test_the_readme_names_what_the_dev_extra_installs():
    """README's `dev` = ... line said `+ export, highlight, train`, while pyproject's dev also installs lsp and
    pytest-lsp: the README names every package and extra of dev."""
    import re
    import tomllib
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    line = re.search(r"`dev` = ([^.]+)\.", (ROOT / "README.md").read_text()).group(1)
    named = set(re.findall(r"[\w-]+", line))
    for req in extras["dev"]:
        m = re.fullmatch(r"mgdsl\[([\w,-]+)\]", req)
        wanted = m.group(1).split(",") if m else [re.match(r"[\w-]+", req).group(0)]
        assert set(wanted) <= named, (req, line)

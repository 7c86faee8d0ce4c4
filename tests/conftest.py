import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import ROOT  # noqa: E402


@pytest.fixture(autouse=True)
def _cwd(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.fixture(autouse=True)
def _verify_ir(monkeypatch):
    """Every IR the tests compile is verified before and after each compiler pass (mgdsl.passes.VERIFY)."""
    import mgdsl.passes
    monkeypatch.setattr(mgdsl.passes, "VERIFY", True)

"""mgdsl/files.py: the one atomic write behind every file mgdsl writes for a user."""
import os

import pytest

from mgdsl import files


def _fail(*a):
    raise OSError("disk full")


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    p = tmp_path / "f.json"
    files.atomic_write(p, "old")
    monkeypatch.setattr(os, "fsync", _fail)
    with pytest.raises(OSError):
        files.atomic_write(p, "new")
    assert p.read_text() == "old" and sorted(x.name for x in tmp_path.iterdir()) == ["f.json"]


def test_a_writer_function_that_fails_half_way_leaves_the_old_file(tmp_path):
    p = tmp_path / "m.onnx"
    files.atomic_write(p, lambda tmp: tmp.write_bytes(b"complete"))
    assert p.read_bytes() == b"complete"

    def half(tmp):
        tmp.write_bytes(b"compl")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(p, half)
    assert p.read_bytes() == b"complete" and sorted(x.name for x in tmp_path.iterdir()) == ["m.onnx"]


def test_text_and_bytes_are_written_as_given(tmp_path):
    files.atomic_write(str(tmp_path / "a.mg"), "model m {}\n")
    files.atomic_write(tmp_path / "b.png", b"\x89PNG")
    assert (tmp_path / "a.mg").read_text() == "model m {}\n" and (tmp_path / "b.png").read_bytes() == b"\x89PNG"

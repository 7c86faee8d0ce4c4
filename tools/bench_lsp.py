"""Latency of `mgdsl lsp` (issue 22): time from a textDocument/didChange to the publishDiagnostics of that
version, over stdio, as an editor sees it. The target is under 100 ms.

Each spec gets N incremental one-character edits, alternating between a spec that compiles (a digit of a number
changed) and one that does not (an operator name misspelt, so the error and its did-you-mean are computed).
Printed: median and p95 per spec, all edits and each kind.

    OMP_NUM_THREADS=1 python tools/bench_lsp.py [--changes 50] [SPEC ...]"""
import argparse
import asyncio
import os
import re
import statistics
import sys
import time
from pathlib import Path

from lsprotocol import types as T
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parent.parent


def largest_spec() -> Path:
    """The largest shipped spec, by size of its text."""
    return max((ROOT / "specs").rglob("*.mg"), key=lambda p: (p.stat().st_size, str(p)))


def edits(text: str) -> tuple[tuple[int, int, str, str], tuple[int, int, str, str]]:
    """(line, column, original character, replacement) of a harmless edit and of one that breaks a name."""
    lines = text.split("\n")
    num = next((n, m.start()) for n, line in enumerate(lines)
               if (m := re.search(r"(?<=param )\w+ = \d", line)) and not line.lstrip().startswith("#"))
    num = (num[0], lines[num[0]].index("=", num[1]) + 2)
    name = next((n, m.start()) for n, line in enumerate(lines) if (m := re.search(r"\b(step|init)\s+\w+", line)))
    name = (name[0], lines[name[0]].index("(", name[1]) - 1)  # the last letter of the first operator applied
    ch_num, ch_name = lines[num[0]][num[1]], lines[name[0]][name[1]]
    return (*num, ch_num, "7" if ch_num != "7" else "8"), (*name, ch_name, "Q")


async def bench(spec: Path, changes: int) -> dict[str, list[float]]:
    client = LanguageClient("bench-lsp", "1")
    seen: dict[int, float] = {}

    @client.feature(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(ls, params: T.PublishDiagnosticsParams):
        seen[params.version] = time.perf_counter()

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    await client.start_io(sys.executable, "-m", "mgdsl", "lsp", env=env)
    await client.initialize_async(T.InitializeParams(capabilities=T.ClientCapabilities()))
    client.initialized(T.InitializedParams())
    uri, text = spec.resolve().as_uri(), spec.read_text()
    client.text_document_did_open(T.DidOpenTextDocumentParams(T.TextDocumentItem(uri, "mg", 1, text)))
    while 1 not in seen:
        await asyncio.sleep(0.001)
    times: dict[str, list[float]] = {"compiles": [], "error": []}
    good, bad = edits(text)
    for k in range(changes):
        line, col, old, new = good if k % 2 == 0 else bad
        version = k + 2
        for ch in (new, old):  # the edit, then undo it, so the next edit starts from the shipped text
            sent = time.perf_counter()
            client.text_document_did_change(T.DidChangeTextDocumentParams(
                T.VersionedTextDocumentIdentifier(uri=uri, version=version),
                [T.TextDocumentContentChangePartial(T.Range(T.Position(line, col), T.Position(line, col + 1)), ch)]))
            while version not in seen:
                await asyncio.sleep(0.0005)
            if ch == new:
                times["compiles" if k % 2 == 0 else "error"].append((seen[version] - sent) * 1000)
            version += 10_000
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return times


def report(spec: Path, times: dict[str, list[float]]) -> None:
    def stats(xs):
        xs = sorted(xs)
        return f"median {statistics.median(xs):6.1f} ms  p95 {xs[min(len(xs) - 1, int(0.95 * len(xs)))]:6.1f} ms"
    every = times["compiles"] + times["error"]
    name = spec.resolve().relative_to(ROOT) if spec.resolve().is_relative_to(ROOT) else spec
    print(f"{name} ({len(spec.read_text().splitlines())} lines): {len(every)} changes: "
          f"{stats(every)}")
    for kind, xs in times.items():
        print(f"    {kind:<9} {stats(xs)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="*", type=Path)
    ap.add_argument("--changes", type=int, default=50)
    args = ap.parse_args()
    for spec in args.specs or [ROOT / "specs/mgnet.mg", largest_spec()]:
        report(spec, asyncio.run(bench(spec, args.changes)))


if __name__ == "__main__":
    main()

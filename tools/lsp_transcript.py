"""Print a transcript of a real `mgdsl lsp` session over stdio (the one in docs/editors.md): the JSON-RPC
messages an editor sends on opening specs/mgnet.mg with a misspelt name and asking for a diagnostic's quick fix,
hover, definition, completion and formatting, and what the server answers.

    python tools/lsp_transcript.py [--full]   # --full: do not shorten long answers"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Session:
    """The server as a subprocess; each message written and read is printed (`-->` sent, `<--` received)."""

    def __init__(self, full: bool):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "mgdsl", "lsp"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, cwd=ROOT)
        self.next_id, self.full = 0, full

    def show(self, arrow: str, msg: dict) -> None:
        text = json.dumps(msg)
        if not self.full and len(text) > 400:
            text = text[:400] + " ...}"
        print(f"{arrow} {text}")

    def send(self, method: str, params, request: bool = True) -> int | None:
        msg = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            self.next_id += 1
            msg["id"] = self.next_id
        body = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()
        self.show("-->", msg)
        return msg.get("id")

    def read(self) -> dict:
        length = 0
        while (line := self.proc.stdout.readline().strip()):
            key, _, value = line.decode().partition(":")
            if key.lower() == "content-length":
                length = int(value)
        msg = json.loads(self.proc.stdout.read(length))
        self.show("<--", msg)
        return msg

    def request(self, method: str, params) -> dict:
        rid = self.send(method, params)
        while (msg := self.read()).get("id") != rid:
            pass
        return msg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true")
    s = Session(ap.parse_args().full)
    uri = (ROOT / "specs/mgnet.mg").as_uri()
    text = (ROOT / "specs/mgnet.mg").read_text().replace("B(f - A(u))", "B(f - AA(u))")
    lines = text.splitlines()
    s.request("initialize", {"processId": None, "rootUri": ROOT.as_uri(), "capabilities": {}})
    s.send("initialized", {}, request=False)
    s.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "mg", "version": 1, "text": text}},
           request=False)
    diags = s.read()["params"]["diagnostics"]
    doc = {"textDocument": {"uri": uri}}
    s.request("textDocument/codeAction", {**doc, "range": diags[0]["range"], "context": {"diagnostics": diags}})
    step = next(n for n, line in enumerate(lines) if line.lstrip().startswith("step"))
    s.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [
        {"range": {"start": {"line": step, "character": lines[step].index("AA")},
                   "end": {"line": step, "character": lines[step].index("AA") + 2}}, "text": "A"}]}, request=False)
    s.read()
    a_use = next(n for n, line in enumerate(lines) if line.lstrip().startswith("Ar[l]"))
    s.request("textDocument/hover", {**doc, "position": {"line": step, "character": lines[step].index("B(")}})
    a_at = {"line": a_use, "character": lines[a_use].index("= A") + 2}
    s.request("textDocument/definition", {**doc, "position": a_at})
    pi = next(n for n, line in enumerate(lines) if line.lstrip().startswith("Pi[l]"))
    s.request("textDocument/completion", {**doc, "position": {"line": pi, "character": lines[pi].index("stride")}})
    s.request("textDocument/formatting", {**doc, "options": {"tabSize": 2, "insertSpaces": True}})
    s.request("shutdown", None)
    s.send("exit", None, request=False)
    s.proc.wait(timeout=10)


if __name__ == "__main__":
    main()

"""`mgdsl lsp` end to end: a real LSP client (pytest-lsp) talks to the server over stdio, one server per module.

Each class of error must come back with the message, hint and range `mgdsl check` gives (compile_spec is what
check runs), and no bad input may kill the server: after each one it answers the next request."""
import os
import sys

import pytest

pytest.importorskip("pygls")
pytest_lsp = pytest.importorskip("pytest_lsp")
from lsprotocol import types as T  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

from helpers import ROOT  # noqa: E402
from mgdsl import compile_spec, parse_overrides  # noqa: E402
from mgdsl.diagnostics import SpecError  # noqa: E402

on_server = pytest.mark.asyncio(loop_scope="module")  # every async test talks to the module's one server

MGNET = (ROOT / "specs/table2/mgnet-256-256-pi1.mg").read_text()  # the reading with Ar[l] = A[l] and an untied Ar[1]
RESNET18 = (ROOT / "specs/table2/resnet18.mg").read_text()
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(
    server_command=[sys.executable, "-m", "mgdsl", "lsp"], server_env=ENV))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(T.InitializeParams(capabilities=T.ClientCapabilities(),
                                                           root_uri=ROOT.as_uri()))
    yield
    await lsp_client.shutdown_session()


class Doc:
    """One open document and its version; each edit waits for the diagnostics of that version."""
    count = 0

    def __init__(self, client: LanguageClient, name: str):
        Doc.count += 1
        self.client, self.version = client, 0
        self.uri = (ROOT / f"lsp-test-{Doc.count}-{name}").as_uri()

    async def _diagnostics(self) -> list[T.Diagnostic]:
        while True:
            p = await self.client.wait_for_notification(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
            if p.uri == self.uri and p.version == self.version:
                return list(p.diagnostics)

    async def open(self, text: str) -> list[T.Diagnostic]:
        self.version, self.text = 1, text
        wait = self._diagnostics()
        self.client.text_document_did_open(T.DidOpenTextDocumentParams(
            T.TextDocumentItem(self.uri, "mg", self.version, text)))
        return await wait

    async def replace(self, text: str) -> list[T.Diagnostic]:
        self.version += 1
        self.text = text
        wait = self._diagnostics()
        self.client.text_document_did_change(T.DidChangeTextDocumentParams(
            T.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
            [T.TextDocumentContentChangeWholeDocument(text)]))
        return await wait

    async def edit(self, line: int, char: int, end_char: int, new: str) -> list[T.Diagnostic]:
        """An incremental change of part of one line (what an editor sends on a keystroke)."""
        self.version += 1
        wait = self._diagnostics()
        self.client.text_document_did_change(T.DidChangeTextDocumentParams(
            T.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
            [T.TextDocumentContentChangePartial(T.Range(T.Position(line, char), T.Position(line, end_char)), new)]))
        return await wait

    def pos(self, needle: str, nth: int = 0, offset: int = 0) -> T.Position:
        """The position of the nth occurrence of `needle` in the text (plus a column offset)."""
        k = -1
        for _ in range(nth + 1):
            k = self.text.index(needle, k + 1)
        line = self.text.count("\n", 0, k)
        return T.Position(line, k - (self.text.rfind("\n", 0, k) + 1) + offset)

    def ident(self):
        return T.TextDocumentIdentifier(self.uri)


def expected(text: str, defines=()) -> list[tuple]:
    """What `mgdsl check` reports for the text: (message, hint, LSP range as a tuple, severity)."""
    try:
        ir = compile_spec("x.mg", parse_overrides(list(defines)), text=text)
        found = ir.warnings
    except SpecError as e:
        found = e.diagnostics
    lines = text.splitlines()
    return [(d.message, d.hint, ((d.span.line - 1, d.span.col - 1), (d.span.end_line - 1, d.span.end_col - 1))
             if d.span else ((0, 0), (0, len(lines[0]) if lines else 0)), d.severity) for d in found]


def got(diags: list[T.Diagnostic]) -> list[tuple]:
    out = []
    for d in diags:
        message, _, hint = d.message.partition("\nhint: ")
        r = d.range
        out.append((message, hint or None, ((r.start.line, r.start.character), (r.end.line, r.end.character)),
                    "warning" if d.severity == T.DiagnosticSeverity.Warning else "error"))
    return out


def rng(diag_tuple):
    return diag_tuple[2]


@on_server
async def test_shipped_specs_open_without_diagnostics_and_the_server_never_loads_torch(client):
    for text in (MGNET, RESNET18, (ROOT / "specs/multigrid/poisson-v11.mg").read_text()):
        assert await Doc(client, "ok.mg").open(text) == []
    info = await client.workspace_execute_command_async(T.ExecuteCommandParams("mgdsl.serverInfo"))
    assert info["torch_loaded"] is False


ERRORS = {
    "unknown name, did-you-mean": ("B(f - A(u))", "B(f - AA(u))"),
    "unknown primitive": ("A[l]    = conv3(u -> f)", "A[l]    = conv4(u -> f)"),
    "space (channel) mismatch": ("conv3(u -> u, stride 2)", "conv3(u -> f, stride 2)"),
    "bad option value": ("conv3(u -> u, stride 2)", "conv3(u -> u, stride 2, pad periodc)"),
    "bad option number": ("conv3(u -> u, stride 2)", "conv3(u -> u, stride 3)"),
    "bad param value": ("param width = 256", "param width = 0"),
    "undefined param": ("smooth nu", "smooth nuu"),
    "unused operator (a warning)": ("  fc ", "  extra = conv3(u -> f)\n  fc "),
    "parse error": ("A[l]    = conv3(u -> f) ", "A[l]    = conv3(u -> f, "),
}


@pytest.mark.parametrize("case", ERRORS)
@on_server
async def test_each_class_of_error_comes_back_as_check_reports_it(client, case):
    old, new = ERRORS[case]
    text = MGNET.replace(old, new, 1)
    want = expected(text)
    assert want, case  # the edit really is an error `check` reports
    diags = got(await Doc(client, "err.mg").open(text))
    if case == "parse error":  # check's first parse error; the cascade after it is one error, not one per line
        assert diags[0] == want[0]
    else:
        assert diags == want


@on_server
async def test_a_diagnostic_is_what_the_mgdsl_check_command_prints(client, tmp_path):
    import json
    import subprocess
    text = MGNET.replace("B(f - A(u))", "B(f - AA(u))").replace("stride 2)", "stride 2, pad periodc)", 1)
    (tmp_path / "typo.mg").write_text(text)
    r = subprocess.run([sys.executable, "-m", "mgdsl", "check", str(tmp_path / "typo.mg"), "--json"],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 2
    printed = [(e["message"], e["hint"], ((e["line"] - 1, e["col"] - 1), (e["end_line"] - 1, e["end_col"] - 1)),
                e["severity"]) for e in json.loads(r.stdout.splitlines()[-1])["errors"]]
    assert len(printed) == 2 and got(await Doc(client, "typo.mg").open(text)) == printed


@on_server
async def test_a_parse_error_does_not_hide_the_errors_in_the_statements_that_parse(client):
    text = MGNET.replace("fc      = linear(u -> classes)", "fc      = linear(u -> classes,").replace(
        "conv3(f -> f, stride 2)", "conv3(f -> ff, stride 2)")
    diags = got(await Doc(client, "two.mg").open(text))
    assert diags[0] == expected(text)[0]  # the parse error, where check puts it
    fixed = text.replace("linear(u -> classes,", "linear(u -> classes)")
    assert expected(fixed)[0] in diags[1:]  # and the undefined space 'ff' on another line, with did-you-mean
    assert "did you mean 'f'?" in expected(fixed)[0][1]


@on_server
async def test_defines_setting_is_checked_like_dash_D(client):
    doc = Doc(client, "defines.mg")
    await doc.open(MGNET)
    for defines in (["widht=3"], ["width=0"], ["width=8"]):
        wait = doc._diagnostics()
        client.workspace_did_change_configuration(T.DidChangeConfigurationParams({"mgdsl": {"defines": defines}}))
        assert got(await wait) == expected(MGNET, defines), defines
    hover = await client.text_document_hover_async(T.HoverParams(doc.ident(), doc.pos("width")))
    assert "= 256" in hover.contents.value and "value in this check: 8" in hover.contents.value
    wait = doc._diagnostics()
    client.workspace_did_change_configuration(T.DidChangeConfigurationParams({"mgdsl": {"defines": []}}))
    assert await wait == []


@on_server
async def test_hover_on_operator_state_param_and_primitive(client):
    doc = Doc(client, "hover.mg")
    await doc.open(MGNET)

    async def hover(needle, nth=0):
        h = await client.text_document_hover_async(T.HoverParams(doc.ident(), doc.pos(needle, nth)))
        return h.contents.value
    a = await hover("A[l]    =")
    assert "A[l]    = conv3(u -> f)" in a and "one instance per grid `l`" in a
    # per grid: the input and output shapes, the linearity class, params and MACs (mgnet: 589,824 per A)
    assert "| A[1] | linear | 589,824 | u 256 x 32 x 32 (grid 1) | f 256 x 32 x 32 (grid 1) | 604 M |" in a
    assert "| A[2] | linear | 589,824 | u 256 x 16 x 16 (grid 2) | f 256 x 16 x 16 (grid 2) | 453 M | 3 |" in a
    assert "| A[4] | linear | 589,824 | u 256 x 4 x 4 (grid 4) | f 256 x 4 x 4 (grid 4) |" in a
    assert "| B[1, 1] | nonlinear |" in await hover("B(f")
    assert "| Ar[2] | linear | 0 |" in await hover("Ar(u)") and "| A[2] |" in await hover("Ar(u)")
    u = await hover("u = u + B")
    assert "| 1 | 256 | 32 x 32 |" in u and "| 4 | 256 | 4 x 4 |" in u
    assert "3 x 32 x 32" in await hover("x :")
    w = await hover("width", 1)
    assert "param `width`** = 256" in w and "-D width=" in w
    assert "pad zero|periodic|reflect" in await hover("conv3")
    empty = await client.text_document_hover_async(T.HoverParams(doc.ident(), T.Position(0, 0)))
    assert empty is None  # a comment: nothing to say
    one = MGNET.replace("A[l]    = conv3(u -> f) ", "A       = conv3(u -> f) ").replace(
        "Ar[l]   = A[l]", "Ar[l]   = A   ").replace("A[l+1](u[l+1])", "A(u[l+1])")  # one A for every grid
    assert await doc.replace(one) == []
    a = await hover("A       =")
    assert "one instance for the whole model" in a and a.count("| A | linear | 589,824 |") == 4  # a row per grid
    assert "| A | linear | 589,824 | u 256 x 8 x 8 (grid 3) | f 256 x 8 x 8 (grid 3) | 113 M | 3 |" in a
    await doc.replace(MGNET)
    assert await doc.replace(MGNET.replace("stride 2)", "stride 2, pad circular)", 1))  # an error: no IR now
    assert "| 2 | 256 | 16 x 16 |" in await hover("u = u + B")  # the grids and spaces still resolve
    a = await hover("A[l]    =")
    assert "| A[1] | linear | 589,824 |" in a and "last version that compiled" in a


@on_server
async def test_definition_and_references(client):
    doc = Doc(client, "nav.mg")
    await doc.open(MGNET)

    async def definition(needle, nth=0, offset=0):
        locs = await client.text_document_definition_async(
            T.DefinitionParams(doc.ident(), doc.pos(needle, nth, offset)))
        return sorted((loc.range.start.line, loc.range.start.character) for loc in locs)
    a_def = doc.pos("A[l]    =")
    assert await definition("= A[l]", offset=2) == [(a_def.line, a_def.character)]  # Ar[l] = A[l] -> A
    assert await definition("A[l+1]") == [(a_def.line, a_def.character)]
    ar = [(doc.pos(s).line, 2) for s in ("Ar[l]   =", "Ar[1]   =")]
    assert await definition("Ar(u)") == ar  # an implicit index: both definitions
    u_def = doc.pos("u = width")
    assert await definition("u + B") == [(u_def.line, u_def.character)]
    w_def = doc.pos("width = 256")
    assert await definition("width", 1) == [(w_def.line, w_def.character)]
    refs = await client.text_document_references_async(T.ReferenceParams(
        context=T.ReferenceContext(include_declaration=True), text_document=doc.ident(),
        position=doc.pos("A[l]    =")))
    lines = sorted(r.range.start.line for r in refs)
    want = sorted(doc.pos(s).line for s in ("A[l]    =", "= A[l]", "A(u)", "A[l+1]"))
    assert lines == want
    for r in refs:
        line = doc.text.splitlines()[r.range.start.line]
        assert line[r.range.start.character:r.range.end.character] == "A"


@on_server
async def test_completion_of_keywords_primitives_options_and_names(client):
    from mgdsl.library import grammar_keywords
    doc = Doc(client, "complete.mg")
    await doc.open(MGNET)

    async def labels(pos):
        res = await client.text_document_completion_async(T.CompletionParams(doc.ident(), pos))
        return {i.label: i for i in res.items}
    top = await labels(T.Position(doc.pos("fc      =").line, 0))
    assert set(grammar_keywords()) <= set(top) and {"conv3", "restrict", "jacobi"} <= set(top)
    assert {"A", "B", "Pi", "width", "nu", "u", "f"} <= set(top)
    assert top["conv3"].detail == "conv3(a -> b, stride 1|2, bias, depthwise, groups N, pad zero|periodic|reflect)"
    await doc.replace(MGNET.replace("conv3(u -> u, stride 2)", "conv3(u -> u, stride 2, pad "))
    p = doc.pos("pad ", offset=4)
    assert set(await labels(p)) == {"zero", "periodic", "reflect"}
    opts = await labels(T.Position(p.line, p.character - 4))
    assert {"stride", "pad", "bias", "groups"} <= set(opts) and opts["pad"].detail == "pad zero|periodic|reflect"
    assert {"u", "f"} <= set(opts)


@on_server
async def test_document_symbols_formatting_and_did_you_mean_code_action(client):
    doc = Doc(client, "edit.mg")
    await doc.open(MGNET)
    syms = await client.text_document_document_symbol_async(T.DocumentSymbolParams(doc.ident()))
    assert [s.name for s in syms] == ["mgnet_256_256_pi1"]
    kids = {(c.name, c.kind) for c in syms[0].children}
    assert {("width", T.SymbolKind.Constant), ("A[l]", T.SymbolKind.Function), ("Ar[1]", T.SymbolKind.Function),
            ("step", T.SymbolKind.Event), ("coarsen", T.SymbolKind.Event), ("output", T.SymbolKind.Event)} <= kids
    fmt = T.DocumentFormattingParams(doc.ident(), T.FormattingOptions(2, True))
    assert not await client.text_document_formatting_async(fmt)  # shipped specs are canonical
    await doc.replace(MGNET.replace("  A[l]    = conv3(u -> f)", "A[l]=conv3( u->f )"))
    edits = await client.text_document_formatting_async(fmt)
    assert len(edits) == 1 and edits[0].new_text == MGNET
    diags = await doc.replace(MGNET.replace("B(f - A(u))", "B(f - AA(u))"))
    actions = await client.text_document_code_action_async(T.CodeActionParams(
        doc.ident(), diags[0].range, T.CodeActionContext(diags)))
    (fix,) = actions
    (edit,) = fix.edit.changes[doc.uri]
    assert fix.title == "Change 'AA' to 'A'" and edit.new_text == "A"
    line = doc.text.splitlines()[edit.range.start.line]
    assert line[edit.range.start.character:edit.range.end.character] == "AA"
    diags = await doc.replace(MGNET.replace("conv3(f -> f, stride 2)", "conv3(f -> ff, stride 2)"))
    (fix,) = await client.text_document_code_action_async(T.CodeActionParams(
        doc.ident(), diags[0].range, T.CodeActionContext(diags)))
    assert fix.title == "Change 'ff' to 'f'"


async def _alive(client, doc: Doc) -> None:
    """The server still answers requests (a hover on the model's name)."""
    await client.text_document_document_symbol_async(T.DocumentSymbolParams(doc.ident()))
    info = await client.workspace_execute_command_async(T.ExecuteCommandParams("mgdsl.serverInfo"))
    assert info["torch_loaded"] is False


@on_server
async def test_bad_input_never_kills_the_server(client):
    doc = Doc(client, "bad.mg")
    assert got(await doc.open("")) == expected("")  # the spec is empty
    await _alive(client, doc)
    binary = bytes(range(256)).decode("latin-1")
    assert await doc.replace(binary)  # an error, not a crash
    await _alive(client, doc)
    assert got(await doc.replace("model m {\x00}")) == expected("model m {\x00}")  # NUL: "not a text file"
    await _alive(client, doc)
    filler = [f"  param p{k} = {k}" if k % 10 == 0 else f"  # note {k}" for k in range(10_000)]
    big = MGNET.replace("  param nu = 2", "\n".join(filler) + "\n  param nu = 2")
    assert len(big.splitlines()) > 10_000 and await doc.replace(big) == []
    await _alive(client, doc)
    line = doc.pos("param p10 =").line
    for k in range(5):  # typed faster than it is checked: the server keeps up with the newest text
        doc.version += 1
        client.text_document_did_change(T.DidChangeTextDocumentParams(
            T.VersionedTextDocumentIdentifier(uri=doc.uri, version=doc.version),
            [T.TextDocumentContentChangePartial(T.Range(T.Position(line, 14), T.Position(line, 16)), f"{k}{k}")]))
    await _alive(client, doc)
    last = doc._diagnostics()
    doc.version += 1
    client.text_document_did_change(T.DidChangeTextDocumentParams(
        T.VersionedTextDocumentIdentifier(uri=doc.uri, version=doc.version),
        [T.TextDocumentContentChangePartial(T.Range(T.Position(line, 8), T.Position(line, 11)), "nu")]))
    final = got(await last)
    assert final == expected(big.replace("param p10 = 10", "param nu = 44")) and "defined twice" in final[0][0]
    await doc.replace(MGNET)
    line = doc.pos("A[l]    = conv3").line
    diags = got(await doc.edit(line, 15, 15, "X"))  # in the middle of `conv3`: `conXv3`
    assert diags == expected(MGNET.replace("A[l]    = conv3", "A[l]    = conXv3"))
    assert "did you mean 'conv3'?" == diags[0][1]
    await _alive(client, doc)
    for k in range(0, 40):  # a line typed and deleted a character at a time
        await doc.edit(line, 12 + k % 7, 13 + k % 7, "(")
    await _alive(client, doc)


def test_recovery_drops_only_the_statements_that_do_not_parse():
    """The pure analysis behind the diagnostics: a stray `)` line is dropped, not the complete line before it;
    an unclosed bracket drops its own statement; errors that follow from a dropped line are not shown."""
    from mgdsl.lsp import analyse
    a = analyse(MGNET.replace("  fc      =", "  )\n  fc      ="), "x.mg")
    line = MGNET.splitlines().index(next(x for x in MGNET.splitlines() if x.startswith("  fc"))) + 1
    assert a.blanked == {line} and [d.message for d in a.diagnostics] == ["unexpected ')'"]
    step = next(n for n, x in enumerate(MGNET.splitlines(), 1) if x.lstrip().startswith("step"))
    a = analyse(MGNET.replace("B(f - A(u))", "B(f - A(u)").replace("(f -> f, stride", "(f -> ff, stride"), "x.mg")
    assert a.blanked == {step}  # not the coarsen line where the parser noticed the unclosed `(`
    assert [d.message for d in a.diagnostics] == [expected(MGNET.replace("B(f - A(u))", "B(f - A(u)"))[0][0],
                                                  "undefined space 'ff'"]  # not "... there is no `step` equation"
    assert analyse(MGNET.replace("}", ""), "x.mg").diagnostics[0].message == "unexpected end of file"


def test_without_pygls_mgdsl_lsp_says_how_to_install_it(capsys, monkeypatch):
    from mgdsl.cli import main
    monkeypatch.delitem(sys.modules, "mgdsl.lsp", raising=False)
    for module in ("pygls", "pygls.lsp", "pygls.lsp.server", "lsprotocol", "lsprotocol.types"):
        monkeypatch.setitem(sys.modules, module, None)  # an import of it fails, as when it is not installed
    assert main(["lsp"]) == 2
    err = capsys.readouterr().err
    assert "mgdsl lsp needs pygls" in err and "pip install 'mgdsl[lsp]'" in err and "Traceback" not in err


def test_a_misspelt_keyword_gets_checks_did_you_mean_and_a_quick_fix():
    """`gridz 4` in the editor says what `mgdsl check` says (unknown keyword, did you mean 'grids'?), not the
    parser's "unexpected number", and the quick fix rewrites the keyword."""
    from mgdsl.lsp import analyse, code_actions, to_lsp
    text = MGNET.replace("  grids 4", "  gridz 4")
    a = analyse(text, "x.mg")
    assert [(d.message, d.hint) for d in a.diagnostics][:1] == [e[:2] for e in expected(text)][:1]
    assert a.diagnostics[0].message == "unknown keyword 'gridz'"
    actions = code_actions("file:///x.mg", text, [to_lsp(d, text.split("\n")) for d in a.diagnostics])
    assert [e.new_text for act in actions for e in act.edit.changes["file:///x.mg"]] == ["grids"]


def test_hover_on_an_operator_whose_definition_does_not_parse_claims_no_scope():
    """With `A[l] = conv3(u -> f` unclosed, hover on A said `sharing scope: one instance for the whole model`
    (A is one per grid) under an empty definition block; it now says the definition does not parse."""
    from mgdsl.lsp import analyse, hover_op
    good = analyse(MGNET, "x.mg")
    a = analyse(MGNET.replace("A[l]    = conv3(u -> f)", "A[l]    = conv3(u -> f"), "x.mg")
    text = hover_op(a, "A", ir=good.ir)
    assert "its definition does not parse now" in text
    assert "whole model" not in text and "```mg\n```" not in text and "| A[1] |" in text
    assert "sharing scope: `[l]`" in hover_op(good, "A")


def test_defines_given_as_one_string_are_applied_not_ignored():
    """`defines = "width=32"` (a string where a list is expected, easy in a Helix or Neovim config) was silently
    ignored, so the previous -D values stayed in force."""
    pytest.importorskip("pygls")
    from mgdsl.lsp import MgServer
    srv = MgServer()
    srv.set_defines({"mgdsl": {"defines": ["width=8"]}})
    srv.set_defines({"mgdsl": {"defines": "width=16 nu=1"}})
    assert srv.params() == ({"width": 16, "nu": 1}, [])


def test_a_did_you_mean_with_several_names_offers_one_quick_fix_each_none_preferred():
    from mgdsl.lsp import analyse, code_actions, to_lsp
    text = MGNET.replace("A[l]    = conv3(u -> f)", "A[l]    = conv(u -> f)")
    a = analyse(text, "x.mg")
    actions = code_actions("file:///x.mg", text, [to_lsp(d, text.split("\n")) for d in a.diagnostics])
    assert [act.title for act in actions] == [f"Change 'conv' to 'conv{k}'" for k in (1, 3, 5, 7)]
    assert not any(act.is_preferred for act in actions)

"""IR to Graphviz: grids as bands (fine on top), smoothing folded into one box per grid, shared operators once."""
from __future__ import annotations

import colorsys
import html
import shutil
import subprocess
from dataclasses import dataclass, field

from .cost import macs, si
from .files import atomic_write
from .ir import IR, Instance, reachable

STEP_KINDS = ("step", "poststep")


def _color(k: int) -> str:
    """Distinct pastel colours, one per operator name (instances of one name share a hue family)."""
    h = (k * 0.618033988749895) % 1.0
    r, g, b = colorsys.hls_to_rgb(h, 0.82, 0.65)
    return "#%02x%02x%02x" % (int(r * 255), int(g * 255), int(b * 255))


def _fmt_params(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return str(n)


def _sup(state: str, level: int, i: int | str | None) -> str:
    return f"{state}<SUP>{level}" + (f",{i}" if i is not None else "") + "</SUP>"


@dataclass
class Picture:
    """The folded graph of one spec: what `render` draws and what the tests inspect."""
    name: str
    grids: int
    sizes: dict
    bands: dict = field(default_factory=dict)       # level -> list of vertex ids
    groups: dict = field(default_factory=dict)      # (level, phase, step|None) -> {"nu": n, "members": [...]}
    vertices: dict = field(default_factory=dict)    # id -> dict(label=..., shape=..., color=..., level=...)
    edges: set = field(default_factory=set)
    instances: dict = field(default_factory=dict)   # instance label -> vertex id
    shares: set = field(default_factory=set)        # (operator, user): used only inside another (eta[l] in B)


def _inst_label(inst: Instance, count: int = 1, index_text: str | None = None) -> str:
    kind = "+".join(l.kind if l.kind != "ref" else l.ref for l in inst.layers)
    convs = [l for l in inst.layers if l.kind in ("conv", "deconv")]
    ksz = f"{convs[0].kernel}x{convs[0].kernel} " if convs else ""
    io = f"{inst.in_ty.space}:{inst.in_ty.channels} → {inst.out_ty.space}:{inst.out_ty.channels}" if inst.in_ty else ""
    stride = max([l.stride for l in inst.layers] or [1])
    name = index_text or inst.label
    many = f" ×{count}" if count > 1 else ""
    params = _fmt_params(inst.params * count)
    return (f"<B>{html.escape(name)}</B>{many}<BR/><FONT POINT-SIZE=\"9\">{html.escape(ksz + kind)}"
            f"{' s2' if stride == 2 else ''}<BR/>{html.escape(io)} · {inst.klass} · {params} params</FONT>")


def picture(ir: IR, expand: bool = False) -> Picture:
    """Contract the unrolled graph: add/sub/relu become edges, steps of a grid become one group."""
    pic = Picture(ir.name, ir.grids, ir.sizes)
    live = reachable(ir.nodes, [ir.output])
    color = _colors(ir)
    uses = _uses(ir, live, expand)
    _add_operators(ir, pic, uses, color, expand)
    _add_shared(ir, pic, color)
    _count_steps(ir, pic)
    shown = _add_states(ir, pic, live, expand)
    _add_ends(ir, pic, live, shown)
    _add_edges(ir, pic, live, shown)
    for vid, v in pic.vertices.items():
        if v["level"] is not None and v["kind"] != "input":
            pic.bands.setdefault(v["level"], []).append(vid)
    return pic


def _colors(ir: IR) -> dict[str, str]:
    """One colour per operator name; an alias (Ar[l] = A[l]) is drawn in its target's colour."""
    names = sorted({i.name for i in ir.instances.values()})
    color = {name: _color(k) for k, name in enumerate(names)}
    for inst in ir.instances.values():
        if len(inst.layers) == 1 and inst.layers[0].kind == "ref":
            color[inst.name] = color[ir.instances[inst.layers[0].ref].name]
    return color


def _uses(ir: IR, live: set, expand: bool) -> dict[str, set]:
    """Where each instance is applied, as (in a smoothing step, grid, phase, step): whether it folds into a grid's
    smoothing box depends only on these."""
    uses: dict[str, set] = {}
    for n in sorted(live):
        node = ir.nodes[n]
        if node.op == "apply":
            w = node.where
            uses.setdefault(node.inst, set()).add(
                (w[0] in STEP_KINDS, w[1], w[3] if w[0] in STEP_KINDS else None, w[2] if expand else None))
    return uses


def _group_of(uses: dict[str, set], label: str, expand: bool) -> tuple | None:
    """The smoothing box an instance folds into: used only in the steps of one grid (pre, post or both)."""
    u = uses.get(label, set())
    if len(u) == 1:
        in_step, level, phase, i = next(iter(u))
        if in_step:
            return (level, phase, i)
    if not expand and u and all(x[0] for x in u) and len({x[1] for x in u}) == 1:
        return (next(iter(u))[1], "both", None)  # the smoother of a V-cycle: pre- and post-smoothing
    return None


def _add_operators(ir: IR, pic: Picture, uses: dict[str, set], color: dict, expand: bool) -> None:
    """A box per applied instance, once each; in the folded view the per-step instances of one name merge into one
    box, and every box used only in a grid's smoothing joins that grid's group."""
    for label, inst in ir.instances.items():
        if label not in uses:
            continue
        g = _group_of(uses, label, expand)
        if g is not None and not expand and len(inst.scope) >= 2:
            vid = f"op:{inst.name}:{g}"
            members = [l for l in ir.instances if ir.instances[l].name == inst.name and _group_of(uses, l, expand) == g]
            text = f"{inst.name}[{inst.index[0]}, i]" if len(inst.index) == 2 else f"{inst.name}[{inst.index[0]}, ·]"
            pic.vertices[vid] = {"label": _inst_label(inst, len(members), text), "shape": "box",
                                 "color": color[inst.name], "level": g[0], "kind": "op", "members": members,
                                 "params": sum(ir.instances[m].params for m in members)}
        else:
            vid = f"op:{label}"
            lvl = inst.in_ty.level if inst.in_ty and inst.in_ty.level else (inst.out_ty.level or None)
            pic.vertices[vid] = {"label": _inst_label(inst), "shape": "box", "color": color[inst.name],
                                 "level": lvl if inst.out_ty and inst.out_ty.level == lvl else None,
                                 "kind": "op", "members": [label], "params": inst.params,
                                 "levels": (inst.in_ty and inst.in_ty.level, inst.out_ty and inst.out_ty.level)}
        pic.instances[label] = vid
        if g is not None:
            key = g if expand else (g[0], g[1], None)
            grp = pic.groups.setdefault(key, {"nu": 0, "members": []})
            if vid not in grp["members"]:
                grp["members"].append(vid)


def _count_steps(ir: IR, pic: Picture) -> None:
    """Each smoothing box's ν: 1 per expanded step, else the grid's pre- or post-smoothing count (both for a
    V-cycle's smoother)."""
    for (level, phase, i) in list(pic.groups):
        counts = {"down": ir.nu, "up": ir.post}.get(phase)
        pic.groups[(level, phase, i)]["nu"] = 1 if i is not None else (
            counts[level - 1] if counts else (ir.nu[level - 1], ir.post[level - 1]))


def _add_states(ir: IR, pic: Picture, live: set, expand: bool) -> dict[int, str]:
    """The states shown: the start and the end of each grid's smoothing, per phase (every step when expanded).
    Returns node id -> vertex id."""
    nodes = ir.nodes
    shown: dict[int, str] = {}
    by_key: dict[tuple, dict[int, int]] = {}
    for (s, level, phase, i), nid in ir.states.items():
        by_key.setdefault((s, level, phase), {})[i] = nid
    for (s, level, phase), its in by_key.items():
        last = max(its)
        distinct = len({its[k] for k in its}) > 1
        pick = sorted(its) if expand else [0, last]
        for i in pick:
            nid = its[i]
            if nid in shown or nid not in live or nodes[nid].op == "zero":
                continue
            tag = None if not distinct else (i if (expand or i == 0) else ("ν" if phase == "down" else "ν′"))
            if phase == "up" and distinct and i == 0:
                tag = "0′"
            vid = f"state:{nid}"
            shown[nid] = vid
            pic.vertices[vid] = {"label": _sup(s, level, tag), "shape": "ellipse", "color": "white",
                                 "level": level, "kind": "state"}
    return shown


def _add_ends(ir: IR, pic: Picture, live: set, shown: dict[int, str]) -> None:
    """The input (with its shape) and the output vertex, outside every band."""
    for n in [n for n in live if ir.nodes[n].op == "input"]:
        shown.setdefault(n, f"state:{n}")
        pic.vertices.setdefault(f"state:{n}", {"label": html.escape(ir.input_name) + " (input " + "x".join(
            map(str, ir.input_ty.shape)) + ")", "shape": "ellipse", "color": "white", "level": None, "kind": "input"})
    pic.vertices["output"] = {"label": "output " + "x".join(map(str, ir.output_ty.shape)), "shape": "ellipse",
                              "color": "#eeeeee", "level": None, "kind": "output"}


def _add_edges(ir: IR, pic: Picture, live: set, shown: dict[int, str]) -> None:
    """The contracted dataflow: an edge from each drawn vertex to the drawn vertices it feeds, no self-loops."""
    nodes = ir.nodes
    memo: dict[int, set] = {}

    def sources(n: int) -> set:
        """The drawn vertices that feed node n (through add/sub/relu/scale, which become edges)."""
        if n in memo:
            return memo[n]
        node = nodes[n]
        if n in shown:
            out = {shown[n]}
        elif node.op == "apply":
            out = {pic.instances[node.inst]}
        elif node.op == "zero":
            out = set()
        else:
            out = set().union(*(sources(a) for a in node.args)) if node.args else set()
        memo[n] = out
        return out

    for n in sorted(live):
        node = nodes[n]
        if node.op == "apply":
            dst = pic.instances[node.inst]
            for a in node.args:
                for s in sources(a):
                    pic.edges.add((s, dst))
        if n in shown:
            for a in (node.args if node.op != "apply" else ()):
                for s in sources(a):
                    pic.edges.add((s, shown[n]))
            if node.op == "apply":
                pic.edges.add((pic.instances[node.inst], shown[n]))
    for s in sources(ir.output) - {"output"}:
        pic.edges.add((s, "output"))
    pic.edges = {(a, b) for a, b in pic.edges if a != b}


def _add_shared(ir: IR, pic: Picture, color: dict) -> None:
    """An operator applied only inside others (eta[l] in B[l, i] = ... eta[l] ...) is drawn once, beside its
    first user and in its smoothing box, so that its parameters are shown exactly once."""
    pending = list(pic.instances)
    while pending:
        user = pending.pop(0)
        for lay in ir.instances[user].layers:
            ref = lay.ref
            if not ref or ref not in ir.instances:
                continue
            if ref not in pic.instances:
                inst, uv = ir.instances[ref], pic.vertices[pic.instances[user]]
                vid = f"op:{ref}"
                pic.vertices[vid] = {"label": _inst_label(inst), "shape": "box", "color": color[inst.name],
                                     "level": uv["level"], "kind": "op", "members": [ref], "params": inst.params,
                                     "levels": uv.get("levels", (uv["level"], uv["level"])), "shared": True}
                pic.instances[ref] = vid
                for g in pic.groups.values():
                    if pic.instances[user] in g["members"]:
                        g["members"].append(vid)
                        break
                pending.append(ref)
            if pic.vertices[pic.instances[ref]].get("shared"):
                pic.shares.add((pic.instances[ref], pic.instances[user]))


def _layout_level(v: dict) -> int | None:
    """The band a vertex is ranked with: its grid, or the finer grid of an operator between two grids."""
    if v["level"] is not None:
        return v["level"]
    levels = [x for x in v.get("levels", ()) if x]
    return min(levels) if len(levels) == 2 else None


def _rank_bands(graph, pic: Picture, ids: dict, prefix: str) -> set:
    """Grids stay in order, fine to coarse: invisible anchors below each band push the next band under it, and
    what comes after the coarsest grid (the classifier) under that. Returns the edges that go back up (to a finer
    band), which must not pull a band down (constraint=false)."""
    lay = {vid: _layout_level(v) for vid, v in pic.vertices.items()}
    levels = sorted({l for l in lay.values() if l is not None})
    if not levels:
        return set()
    for l in levels:
        graph.node(f"{prefix}below_{l}", "", shape="point", style="invis", width="0", height="0")
    for vid, l in lay.items():
        if l is None:
            continue
        graph.edge(ids[vid], f"{prefix}below_{l}", style="invis")
        if l > levels[0]:
            graph.edge(f"{prefix}below_{levels[levels.index(l) - 1]}", ids[vid], style="invis")
    after = {b for a, b in pic.edges if lay[a] is not None and lay[b] is None}
    while True:  # everything downstream of a band that is not in one: the classifier, the output
        more = {b for a, b in pic.edges if a in after and lay[b] is None} - after
        if not more:
            break
        after |= more
    for vid in sorted(after):  # a set: sorted, so the .dot is the same bytes on every run
        graph.edge(f"{prefix}below_{levels[-1]}", ids[vid], style="invis")
    return {(a, b) for a, b in pic.edges if lay[a] is not None and lay[b] is not None and lay[a] > lay[b]}


def to_dot(pics: list[Picture], irs: list[IR]):
    """One graphviz.Digraph; several specs side by side, bands of equal grid on the same rank."""
    import graphviz

    dot = graphviz.Digraph("mgdsl", graph_attr={"rankdir": "TB", "newrank": "true", "compound": "true",
                                                "fontname": "Helvetica", "nodesep": "0.35", "ranksep": "0.45"},
                           node_attr={"fontname": "Helvetica", "fontsize": "11", "style": "filled"},
                           edge_attr={"color": "#555555", "arrowsize": "0.7"})
    anchors: dict[int, list[str]] = {}
    for k, (pic, ir) in enumerate(zip(pics, irs)):
        p = f"s{k}_"
        ids = {vid: f"{p}v{j}" for j, vid in enumerate(pic.vertices)}
        grouped = {m for g in pic.groups.values() for m in g["members"]}
        with dot.subgraph(name=f"cluster_spec_{k}") as spec:
            spec.attr(label=f"{ir.name}  ({ir.total_params:,} params, {si(macs(ir).total)} MACs)", fontsize="14",
                      style="rounded",
                      color="#999999")
            for level in range(1, ir.grids + 1):
                h, w = ir.sizes[level]
                chans = ", ".join(f"c_{s}={ir.spaces[s][level - 1]}" for s in ir.state_names)
                with spec.subgraph(name=f"cluster_{p}grid_{level}") as band:
                    band.attr(label=f"grid {level}: {h}×{w}, {chans}", style="filled", fillcolor="#f4f6fb",
                              color="#c9d1e6", labeljust="l")
                    first = [v for v in pic.bands.get(level, []) if pic.vertices[v]["kind"] == "state"]
                    if first:  # the grid's entry state: aligned across specs
                        anchors.setdefault(level, []).append(ids[first[0]])
                    for vid in pic.bands.get(level, []):
                        if vid not in grouped:
                            _node(band, ids[vid], pic.vertices[vid])
                    for (glevel, phase, i), g in sorted(pic.groups.items(), key=lambda kv: str(kv[0])):
                        if glevel != level:
                            continue
                        sub = f"cluster_{p}smooth_{level}_{phase}_{i}"
                        with band.subgraph(name=sub) as box:
                            what = {"down": "smoothing", "up": "post-smoothing"}.get(phase, "smoothing")
                            if i is not None:
                                title = f"{what} step {i}"
                            elif phase == "both":
                                title = f"smoothing × {g['nu'][0]} pre, × {g['nu'][1]} post"
                            else:
                                title = f"{what} × {g['nu']}"
                            box.attr(label=title, style="rounded,dashed", color="#7a8bb5", fillcolor="#ffffff")
                            for vid in g["members"]:
                                _node(box, ids[vid], pic.vertices[vid])
            for vid, v in pic.vertices.items():
                if v["level"] is None or vid not in {x for b in pic.bands.values() for x in b}:
                    if vid not in grouped:
                        _node(spec, ids[vid], v)
            upward = _rank_bands(spec, pic, ids, p)
        for a, b in sorted(pic.edges):
            back = pic.vertices[a].get("kind") == "op" and pic.vertices[b].get("kind") == "op" and \
                any(a in g["members"] and b in g["members"] for g in pic.groups.values()) and \
                (b, a) in pic.edges and a > b
            dot.edge(ids[a], ids[b], **({"style": "dashed", "constraint": "false"} if back else
                                        {"constraint": "false"} if (a, b) in upward else {}))
        for a, b in sorted(pic.shares):
            dot.edge(ids[a], ids[b], style="dotted", arrowhead="none", constraint="false", color="#888888")
    for level, names in anchors.items():
        if len(names) > 1:
            with dot.subgraph() as same:
                same.attr(rank="same")
                for n in names:
                    same.node(n)
    return dot


def _node(g, vid: str, v: dict) -> None:
    g.node(vid, f"<{v['label']}>", shape=v["shape"], fillcolor=v["color"], color="#444444",
           margin="0.08,0.04" if v["shape"] == "box" else "0.05,0.02")


def ir_dot(ir: IR):
    """--ir: the raw unrolled operator graph (networkx), one DOT node per IR node."""
    import graphviz
    import networkx as nx

    g = nx.DiGraph()
    for n in ir.nodes:
        label = n.inst or n.prim or n.op
        if n.op == "scale":
            label = f"{n.coef:g}·"
        g.add_node(n.id, label=f"{n.id}: {label}\n{'x'.join(map(str, n.ty.shape))} {n.ty.space}", tag=n.tag)
        for a in n.args:
            g.add_edge(a, n.id)
    dot = graphviz.Digraph(ir.name, node_attr={"fontname": "Helvetica", "fontsize": "10", "shape": "box"})
    for nid, data in g.nodes(data=True):
        dot.node(str(nid), data["label"], style="filled" if data["tag"] else "",
                 fillcolor="#e8eefc" if data["tag"] else "white")
    for a, b in g.edges():
        dot.edge(str(a), str(b))
    return dot


def render(irs: list[IR], path: str, fmt: str | None = None, expand: bool = False, raw_ir: bool = False) -> str:
    """Write FILE; without a `dot` binary, write the .dot and say how to install Graphviz."""
    fmt = fmt or (path.rsplit(".", 1)[-1] if "." in path else "svg")
    dot = ir_dot(irs[0]) if raw_ir else to_dot([picture(ir, expand) for ir in irs], irs)
    source = dot.source
    if fmt == "dot":
        atomic_write(path, source.encode())
        return f"wrote {path}"
    exe = shutil.which("dot")
    if exe is None:
        dot_path = path.rsplit(".", 1)[0] + ".dot"
        atomic_write(dot_path, source.encode())
        return (f"wrote {dot_path}; no Graphviz `dot` found to make {fmt}: install it "
                f"(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz)")
    r = subprocess.run([exe, f"-T{fmt}"], input=source.encode(), capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"dot failed: {r.stderr.decode(errors='replace').strip()}")
    atomic_write(path, r.stdout)
    warn = r.stderr.decode(errors="replace").strip()
    return f"wrote {path}" + (f" (dot: {warn})" if warn else "")

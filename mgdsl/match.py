"""Spec against spec, the symbolic half (no torch): two IRs matched as models, up to renaming of states,
operators and params and the order of definitions.

Each spec's live unrolled graph becomes one hash-consed DAG in normal form (normal.py's normal form, applied
to the whole network from the input to the output rather than to one step): a value is a linear combination
with constant coefficients of atoms, an atom is a linear factor applied to an atom or a non-linear / affine
factor applied to a combination, down to the input. State names vanish (a state is only a value), `+ A(u) −
A(u)` cancels, `C(D(u))` with C, D linear is D's and C's layers whatever the definitions were called, and the
two identities the primitives promise are applied: sub_id(χ)(x) = χ(x) − x and δ̂(σ([id, −id](y))) = −y
(lowering.SubId, Split, Delta). Layers that carry trained parameters keep their identity (the owner instance
and position): two applications of one layer are one node, so sharing is part of the graph. networkx's VF2
then looks for an isomorphism of the two DAGs (`tied`), or of the DAGs without that identity (`untied`), whose
correspondence of layers says which operator of one spec ties which operators of the other."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import networkx as nx
from networkx.algorithms.isomorphism import DiGraphMatcher

from . import normal as N
from .ir import reachable

SUB_ID = "sub_id(χ)(x) = χ(x) − x (8.13)"
DELTA = "δ̂(σ([y, −y])) = −y, i.e. relu(y) − relu(−y) = y (8.17), (8.21)"


@dataclass
class Net:
    """A spec's network as a normal-form DAG: `g` has lc / app / in nodes and, for trained layers, layer and
    inst nodes; `states` maps the IR's state keys to the combination (atom id -> coefficient) they hold."""
    ir: object
    g: nx.DiGraph
    root: int
    states: dict = field(default_factory=dict)
    trained: dict = field(default_factory=dict)  # graph node -> (owner label, layer position)
    hashes: dict = field(default_factory=dict)  # every node built (also those an identity cancelled) -> hash
    identities: list = field(default_factory=list)  # the primitives' identities the normal form applied

    def untied(self) -> nx.DiGraph:
        return self.g.subgraph(n for n, d in self.g.nodes(data=True) if d["kind"] in ("lc", "app", "in"))


def layer_sig(ir, owner: str, pos: int) -> tuple:
    """What a layer computes, less its weights: kind, channels and every option (and what it reads)."""
    lay = ir.instances[owner].layers[pos]
    own = (lay.kind, lay.cin, lay.cout, lay.kernel, lay.stride, lay.groups, lay.bias, lay.pad, lay.stencil,
           lay.omega, lay.init, lay.out_size, lay.vector, lay.params, lay.klass)
    if lay.ref and lay.ref in ir.instances:
        own += (tuple(layer_sig(ir, o, p) for o, p in (f.key for f in N.factors(ir, lay.ref))),)
    return own


def _trained(ir, f: N.Factor) -> bool:
    """A layer whose weights a model owns (so that which layer it is matters), not a fixed map."""
    if f.key[0] == "prim":
        return False
    lay = ir.instances[f.key[0]].layers[f.key[1]]
    return lay.params > 0 or bool(lay.ref and lay.ref in ir.instances and not ir.instances[lay.ref].fixed)


class _Builder:
    """Interns the DAG's nodes bottom-up, each with a structural hash that ignores layer identity."""

    def __init__(self, ir):
        self.ir = ir
        self.g = nx.DiGraph()
        self.ids: dict = {}
        self.keys: list = []
        self.trained: dict = {}
        self.used: set = set()

    def node(self, key: tuple, kind: str, sig, children: list) -> int:
        nid = self.ids.get(key)
        if nid is not None:
            return nid
        nid = len(self.keys)
        self.ids[key] = nid
        self.keys.append(key)
        parts = sorted(f"{self.g.nodes[c]['h']}:{e!r}" for c, e in children if self.g.nodes[c]["kind"] != "layer")
        h = hashlib.sha1(repr((kind, sig, parts)).encode()).hexdigest()[:16]
        self.g.add_node(nid, kind=kind, sig=sig, h=h)
        for c, e in children:
            self.g.add_edge(nid, c, e=repr(e))
        return nid

    def lc(self, terms: dict) -> int:
        items = tuple(sorted((a, c) for a, c in terms.items() if c != 0))
        return self.node(("lc", items), "lc", None, [(a, c) for a, c in items])

    def layer(self, f: N.Factor) -> int:
        owner, pos = f.key
        inst = self.node(("inst", owner), "inst", len(self.ir.instances[owner].layers), [])
        nid = self.node(("layer", owner, pos), "layer", layer_sig(self.ir, owner, pos), [(inst, pos)])
        self.trained[nid] = (owner, pos)
        return nid

    def app(self, f: N.Factor, arg: int) -> int:
        trained = _trained(self.ir, f)
        # relu, id, a pool: the same map inside a definition as written inline in an equation
        plain = f.key[0] == "prim" or (f.kind in N.INLINE_PRIMS and not trained)
        sig = ("prim", f.kind) if plain else layer_sig(self.ir, *f.key)
        children = [(arg, "x")] + ([(self.layer(f), "op")] if trained else [])
        return self.node(("app", f.key if trained else sig, arg), "app", sig, children)

    def apply(self, f: N.Factor, lc: dict) -> dict:
        """f(lc): a linear factor distributes, any other wraps; sub_id and δ̂∘σ∘split by their identities."""
        if f.kind == "id":
            return lc
        if f.kind == "sub_id" and f.key[0] != "prim":
            ref = self.ir.instances[f.key[0]].layers[f.key[1]].ref
            y = lc
            for g in N.factors(self.ir, ref):
                y = self.apply(g, y)
            self.used.add(SUB_ID)
            return _add(y, lc, -1.0)
        if f.linear and f.kind == "delta":
            out: dict = {}
            for a, c in lc.items():
                y = self._relu_split(a)
                if y is not None:
                    self.used.add(DELTA)
                out = _add(out, y, -c) if y is not None else _add(out, {self.app(f, a): 1.0}, c)
            return out
        if f.linear:
            return {self.app(f, a): c for a, c in lc.items()}
        return {self.app(f, self.lc(lc)): 1.0}

    def _is(self, nid: int, kind: str) -> bool:
        sig = self.g.nodes[nid]["sig"]
        return self.keys[nid][0] == "app" and sig[0] in ("prim", kind) and kind in sig[:2]

    def _relu_split(self, atom: int) -> dict | None:
        """y when atom is σ([id, −id](y)), for δ̂(σ([y, −y])) = −y (8.17), else None."""
        if not self._is(atom, "relu") or self.keys[self.keys[atom][2]][0] != "lc":
            return None
        terms = self.keys[self.keys[atom][2]][1]
        if not terms or not all(self._is(a, "split") for a, _ in terms):
            return None
        y: dict = {}
        for a, c in terms:
            y = _add(y, {self.keys[a][2]: 1.0}, c)
        return y


def _add(a: dict, b: dict, s: float) -> dict:
    out = dict(a)
    for k, c in b.items():
        out[k] = out.get(k, 0.0) + s * c
    return {k: c for k, c in out.items() if c != 0}


def network(ir) -> Net:
    """The IR's live graph as a normal-form DAG (every node from the input to the output)."""
    b = _Builder(ir)
    live = reachable(ir.nodes, [ir.output])
    val: dict = {}
    for nid in sorted(live):
        n = ir.nodes[nid]
        if n.op == "input":
            val[nid] = {b.node(("in",), "in", tuple(n.ty.shape), []): 1.0}
        elif n.op == "zero":
            val[nid] = {}
        elif n.op in ("add", "sub"):
            val[nid] = _add(val[n.args[0]], val[n.args[1]], 1.0 if n.op == "add" else -1.0)
        elif n.op == "scale":
            val[nid] = _add({}, val[n.args[0]], float(n.coef))
        elif n.op == "prim":
            val[nid] = b.apply(N.prim_factor(n.prim), val[n.args[0]])
        elif n.op == "apply":
            x = val[n.args[0]]
            for f in N.factors(ir, n.inst):
                x = b.apply(f, x)
            val[nid] = x
        else:
            raise ValueError(f"node {nid}: {n.op}")
    root = b.lc(val[ir.output])
    b.g.nodes[root]["sig"] = ("output", tuple(ir.output_ty.shape))
    states = {k: val[v] for k, v in ir.states.items() if v in val}
    keep = nx.descendants(b.g, root) | {root}  # what an identity cancelled is built but not part of the value
    g = b.g.subgraph(sorted(keep)).copy()
    return Net(ir, g, root, states, {n: k for n, k in b.trained.items() if n in keep},
               {n: d["h"] for n, d in b.g.nodes(data=True)}, sorted(b.used))


# ------------------------------------------------------------------ matching

def _node_match(a: dict, b: dict) -> bool:
    return a["kind"] == b["kind"] and a["h"] == b["h"] and a["sig"] == b["sig"]


def _edge_match(a: dict, b: dict) -> bool:
    return a["e"] == b["e"]


def isomorphism(ga: nx.DiGraph, gb: nx.DiGraph) -> dict | None:
    """A node map ga -> gb preserving kinds, signatures, coefficients and edges; None when there is none.

    Colour refinement (Weisfeiler-Lehman, through successors and predecessors) and individualisation: VF2
    (networkx's DiGraphMatcher) updates its state in O(n) per matched node, 50 s for MG0's 1,600 nodes, while
    these DAGs are nearly asymmetric once refined. The map found is verified; where individualising without
    backtracking fails on a small graph, VF2 decides."""
    if ga.number_of_nodes() != gb.number_of_nodes() or ga.number_of_edges() != gb.number_of_edges():
        return None
    ca = {n: (d["kind"], d["h"], d["sig"]) for n, d in ga.nodes(data=True)}
    cb = {n: (d["kind"], d["h"], d["sig"]) for n, d in gb.nodes(data=True)}
    while True:
        ca, cb = _refine(ga, gb, ca, cb)
        if ca is None:
            return None
        classes: dict = {}
        for n in sorted(ga):
            classes.setdefault(ca[n], []).append(n)
        amb = next((c for c, ns in classes.items() if len(ns) > 1), None)
        if amb is None:
            break
        a0, b0 = classes[amb][0], min(n for n in gb if cb[n] == amb)
        ca, cb = dict(ca), dict(cb)
        ca[a0] = cb[b0] = ("individual", amb)
    inv = {c: n for n, c in cb.items()}
    iso = {n: inv[c] for n, c in ca.items()}
    if all(gb.has_edge(iso[u], iso[v]) and gb.edges[iso[u], iso[v]]["e"] == d["e"] for u, v, d in ga.edges(data=True)):
        return iso
    if ga.number_of_nodes() > 300:
        return None
    m = DiGraphMatcher(ga, gb, node_match=_node_match, edge_match=_edge_match)
    return next(m.isomorphisms_iter(), None)


def _refine(ga, gb, ca: dict, cb: dict):
    """Refine both colourings jointly until stable; (None, None) when the colour classes differ in size."""
    adj_a, adj_b = _adjacency(ga), _adjacency(gb)
    count = -1
    while True:
        table: dict = {}
        ca = {n: table.setdefault(_sig(adj_a, n, ca), len(table)) for n in sorted(ga)}
        cb = {n: table.setdefault(_sig(adj_b, n, cb), len(table)) for n in sorted(gb)}
        hist_a, hist_b = _hist(ca), _hist(cb)
        if hist_a != hist_b:
            return None, None
        if len(hist_a) == count:
            return ca, cb
        count = len(hist_a)


def _adjacency(g) -> dict:
    return {n: ([(d["e"], m) for m, d in g.succ[n].items()], [(d["e"], m) for m, d in g.pred[n].items()])
            for n in g}


def _sig(adj: dict, n, c: dict) -> tuple:
    succ, pred = adj[n]
    return (c[n], tuple(sorted((e, c[m]) for e, m in succ)), tuple(sorted((e, c[m]) for e, m in pred)))


def _hist(c: dict) -> dict:
    out: dict = {}
    for v in c.values():
        out[v] = out.get(v, 0) + 1
    return out


@dataclass
class Match:
    """How two specs correspond: `kind` is tied (the same model), spec-ties (the spec ties layers the target
    leaves free), target-ties (the reverse), or none; `layers` maps each target layer to a spec layer."""
    kind: str
    layers: dict = field(default_factory=dict)      # (target owner, pos) -> (spec owner, pos)
    operators: dict = field(default_factory=dict)   # target label -> spec label
    states: dict = field(default_factory=dict)      # spec state -> target state
    nodes: dict = field(default_factory=dict)       # spec graph node -> target graph node
    note: str = ""


def match(a: Net, b: Net) -> Match:
    """The tied isomorphism if there is one, else the untied one with its tying, else none."""
    iso = isomorphism(a.g, b.g)
    if iso is not None:
        pairs = {(a.trained[n], b.trained[m]) for n, m in iso.items() if n in a.trained}
        return _finish(a, b, "tied", pairs, iso)
    iso = isomorphism(a.untied(), b.untied())
    if iso is None:
        return Match("none")
    pairs = set()
    for n, m in iso.items():
        la = [a.trained[c] for c in a.g.successors(n) if c in a.trained]
        lb = [b.trained[c] for c in b.g.successors(m) if c in b.trained]
        if len(la) != len(lb):
            return Match("none", note="a layer with weights in one spec is a fixed map in the other")
        pairs |= set(zip(la, lb))
    fa, fb = _functional(pairs, 0), _functional(pairs, 1)
    kind = "tied" if fa and fb else "spec-ties" if fb else "target-ties" if fa else "none"
    return _finish(a, b, kind, pairs, iso)


def _functional(pairs: set, side: int) -> bool:
    """Each layer on `side` corresponds to exactly one layer on the other side."""
    seen: dict = {}
    for p in pairs:
        if seen.setdefault(p[side], p[1 - side]) != p[1 - side]:
            return False
    return True


def _finish(a: Net, b: Net, kind: str, pairs: set, iso: dict) -> Match:
    out = Match(kind, nodes=iso)
    if kind in ("tied", "spec-ties"):
        out.layers = {lb: la for la, lb in sorted(pairs)}
    else:  # the target ties: each spec layer's target layer carries the spec's weights (the first one wins)
        for la, lb in sorted(pairs):
            out.layers.setdefault(lb, la)
    ops: dict = {}
    for lb, la in out.layers.items():
        ops.setdefault(lb[0], set()).add(la[0])
    out.operators = {k: ", ".join(sorted(v)) for k, v in sorted(ops.items(), key=lambda kv: label_key(kv[0]))}
    out.states = state_map(a, b)
    return out


def state_map(a: Net, b: Net) -> dict:
    """spec state -> target state: the target state that holds the same value (by structure) wherever both
    have one. Values are compared by their atoms' hashes, as a state's atoms may cancel later and so not be
    in the matched graph."""
    def value(net: Net, lc: dict) -> tuple:
        return tuple(sorted((net.hashes[k], c) for k, c in lc.items()))
    pos_a: dict = {}
    pos_b: dict = {}
    for net, pos in ((a, pos_a), (b, pos_b)):
        for (s, *p), lc in net.states.items():
            pos.setdefault(s, {})[tuple(p)] = value(net, lc)
    out: dict = {}
    for s in sorted(pos_a):
        for t in sorted(pos_b):
            common = set(pos_a[s]) & set(pos_b[t])
            if common and all(pos_a[s][p] == pos_b[t][p] for p in common) and t not in out.values():
                out[s] = t
                break
    return out


def label_key(label: str) -> tuple:
    """A[10, 2] after A[2, 1]: numeric order of the indices, for stable printing."""
    name, _, idx = label.partition("[")
    return (name, tuple(int(x) if x.strip().lstrip("-").isdigit() else 0 for x in idx.rstrip("]").split(",")
                        if x.strip()))


def partial(a, b) -> dict:
    """A best-effort layer correspondence (target layer -> spec layer) between specs that do not match: the
    trained layers in order of first use, each keyed by where (equation, grid, step) and what it is, aligned
    by difflib."""
    import difflib
    la, lb = _first_use(a), _first_use(b)
    sm = difflib.SequenceMatcher(None, [w for _, w in la], [w for _, w in lb], autojunk=False)
    out = {}
    for blk in sm.get_matching_blocks():
        for j in range(blk.size):
            out[lb[blk.b + j][0]] = la[blk.a + j][0]
    return out


def fill(a: Net, b: Net, layers: dict) -> dict:
    """layers, plus a spec layer of the same signature for every target layer nothing was carried to: the one
    applied to a value of the same structure, else used at the same place, else the nearest in order of first
    use. A difference then comes from the structure, not from weights the target drew itself (A(u) + E(u)
    against 2·A(u) agrees with E := A)."""
    la, lb = _first_use(a.ir), _first_use(b.ir)
    args_a, args_b = _arguments(a), _arguments(b)
    out = dict(layers)
    for j, (kb, (wb, sb)) in enumerate(lb):
        if kb in out:
            continue
        cands = [(not args_a.get(la[i][0], set()) & args_b.get(kb, set()), la[i][1][0] != wb,
                  abs(i / len(la) - j / len(lb)), i) for i in range(len(la)) if la[i][1][1] == sb]
        if cands:
            out[kb] = la[min(cands)[3]][0]
    return out


def _arguments(net: Net) -> dict:
    """layer key -> the structural hashes of the values it is applied to."""
    out: dict = {}
    for n, key in net.trained.items():
        for app in net.g.predecessors(n):
            arg = next(m for m in net.g.successors(app) if net.g.edges[app, m]["e"] == repr("x"))
            out.setdefault(key, set()).add(net.g.nodes[arg]["h"])
    return out


def _first_use(ir) -> list:
    """[(layer key, (where first applied, signature))] for the trained layers, in order of first use."""
    seen: dict = {}
    for nid in sorted(reachable(ir.nodes, [ir.output])):
        n = ir.nodes[nid]
        if n.op == "apply":
            for f in N.factors(ir, n.inst):
                if _trained(ir, f) and f.key not in seen:
                    seen[f.key] = (tuple(n.where), layer_sig(ir, *f.key))
    return list(seen.items())


def partial_states(a, b) -> dict:
    """spec state -> target state when the specs do not match: the same name, else by declaration order."""
    out = {s: s for s in a.state_names if s in b.state_names}
    rest_b = [t for t in b.state_names if t not in out.values()]
    for s in a.state_names:
        if s not in out and rest_b:
            out[s] = rest_b.pop(0)
    return out

"""Differential testing of `check` against the lowering (issue 10): whatever the checker accepts must lower
and run one forward pass at small width with the checker's output shape, parameter count and MACs;
whatever it refuses must be a located SpecError. Anything else is a defect.

    python tools/fuzz_specs.py --mutants 1500 [--seed 0] [--generated 200] [--show 5]

prints: cases, accepted, run, refused (located), defects, and the first defects in full."""
from __future__ import annotations

import argparse
import random
import re
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SMALL = {"width": 4, "fwidth": 6, "n": 9}
MAX_PARAMS = 20_000_000
# refusals that concern the whole spec rather than a place in it
WHOLE_SPEC = ("over the budget", "the spec is empty", "-D ")


@dataclass
class Outcome:
    verdict: str  # "run" | "refused" | "defect"
    detail: str = ""


@dataclass
class Tally:
    cases: int = 0
    accepted: int = 0
    run: int = 0
    refused: int = 0
    defects: list = field(default_factory=list)

    def add(self, text: str, o: Outcome) -> None:
        self.cases += 1
        if o.verdict == "run":
            self.accepted += 1
            self.run += 1
        elif o.verdict == "refused":
            self.refused += 1
        else:
            if not o.detail.startswith("refusal"):
                self.accepted += 1
            self.defects.append((text, o.detail))

    def line(self) -> str:
        return (f"cases {self.cases}, accepted {self.accepted}, run {self.run}, refused (located) {self.refused}, "
                f"defects {len(self.defects)}")


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _small(text: str) -> dict:
    """-D overrides that shrink the spec: its numeric params among width, fwidth, n (from the parse alone)."""
    from mgdsl import syntax as S
    try:
        model = S.parse(text, "fuzz.mg")
    except Exception:
        return {}
    params = {it.name: it.value for it in model.items if isinstance(it, S.Param)}
    return {k: v for k, v in SMALL.items() if isinstance(params.get(k), (int, float))}


def trial(text: str, timeout_s: int = 30) -> Outcome:
    """One case: check it; if accepted, lower it and run one forward pass at small width."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import mgdsl
    from mgdsl.cost import macs
    from mgdsl.diagnostics import SpecError
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout_s)
    stage = "check"
    try:
        try:
            ir = mgdsl.compile_spec("fuzz.mg", _small(text), text, max_params=MAX_PARAMS)
        except SpecError as e:
            bad = [d for d in e.diagnostics if d.span is None and not any(w in d.message for w in WHOLE_SPEC)]
            if not e.diagnostics or bad:
                return Outcome("defect", f"refusal without a location: {bad[0].message if bad else 'no message'}")
            return Outcome("refused", e.diagnostics[0].message)
        stage = "lower"
        try:
            model = mgdsl.lower(ir).eval()
        except SpecError as e:  # a property only the built operator shows (a singular inverse): located, exit 2
            if any(d.span is None for d in e.diagnostics):
                return Outcome("defect", f"lowering refused without a location: {e.diagnostics[0].message}")
            return Outcome("refused", e.diagnostics[0].message)
        n_params = sum(p.numel() for p in model.parameters())
        if n_params != ir.total_params:
            return Outcome("defect", f"parameters: checker {ir.total_params}, module {n_params}")
        stage = "forward"
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            y = model(torch.randn(1, *ir.input_ty.shape))
        if tuple(y.shape[1:]) != ir.output_ty.shape:
            return Outcome("defect", f"output shape: checker {ir.output_ty.shape}, module {tuple(y.shape[1:])}")
        want, got = counter.get_total_flops() // 2, macs(ir).total
        if abs(got - want) > 0.01 * want:
            return Outcome("defect", f"MACs: cost.macs {got}, flop counter {want}")
        return Outcome("run")
    except _Timeout:
        return Outcome("defect", f"{stage}: no answer within {timeout_s} s")
    except Exception as e:  # the defects this harness exists to find
        tb = traceback.format_exc(limit=-3)
        return Outcome("defect", f"{stage}: {type(e).__name__}: {e}\n{tb}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------- mutations of the shipped specs

def base_specs() -> list[tuple[str, str]]:
    """Every shipped spec except the 224x224 ImageNet one (too large to run in a fuzz loop)."""
    return [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted((ROOT / "specs").rglob("*.mg"))
            if "imagenet" not in p.name]


NUMBERS = ["0", "1", "2", "3", "4", "5", "7", "8", "9", "17", "28", "33", "64", "-1", "0.5", "2147483648"]
WORDS = ["l", "i", "j", "J", "u", "f", "x", "classes", "A", "B", "R", "P", "Pi", "S", "bilinear", "linear",
         "average", "periodic", "reflect", "zero", "foo"]
OPTIONS = [", stride 2", ", stride 1", ", stride 3", ", bias", ", bias 0", ", depthwise", ", groups 2", ", groups 0",
           ", pad periodic", ", pad reflect", ", pad foo", ", pad", ", omega 0.5", ", init 2", ", linear", ", average",
           ", foo", ", u -> f", ", A[l]"]
LINES = ["  cycle V", "  cycle W", "  grids 1", "  grids auto", "  grids 6", "  smooth 0", "  smooth 1, 2",
         "  postsmooth 1", "  refine u = u + P(u[l+1])", "  refine u = u + P(u[l+1] - u[l+1, 0])",
         "  coarsen u[l+1] = 0; f[l+1] = R(f - A(u))", "  space u = [4, 8, 16, 32], f = 8",
         "  P[l] = deconv3(u -> u, stride 2)", "  P[l] = deconv4(u -> u, stride 2)", "  P[l] = transpose(R[l])",
         "  S[l] = jacobi(A[l], f -> u, omega 0.8)", "  S[J] = inverse(A[J], f -> u)", "  step[1] u = u",
         "  A[l] = R[l-1] . A[l-1] . P[l-1]", "  poststep u = u + B(f - A(u))", "  input x : 3 x 28 x 28",
         "  A[1] = laplace(u -> f, pad periodic)", "  A[1] = laplace(u -> f, pad reflect)",
         "  R[l] = restrict(f -> f, average)", "  P[l] = prolong(u -> u, linear)"]


def _prim_names() -> list[str]:
    from mgdsl.prims import PRIMS
    return sorted(PRIMS)


def mutate(text: str, rng: random.Random) -> str:
    """One seeded edit of a spec's text: a token, an index offset, an option, a primitive or a whole line."""
    lines = text.split("\n")
    body = [k for k, ln in enumerate(lines) if ln.strip() and not ln.strip().startswith("#")
            and not ln.startswith("model") and ln.strip() != "}"]
    k = rng.choice(body)
    ln = lines[k]
    kind = rng.randrange(9)
    if kind == 0:  # a number
        nums = list(re.finditer(r"(?<![A-Za-z_\d.])\d+(\.\d+)?", ln))
        if nums:
            m = rng.choice(nums)
            ln = ln[:m.start()] + rng.choice(NUMBERS) + ln[m.end():]
    elif kind == 1:  # a name
        names = list(re.finditer(r"[A-Za-z_][A-Za-z0-9_']*", ln))
        if names:
            m = rng.choice(names)
            ln = ln[:m.start()] + rng.choice(WORDS + _prim_names()) + ln[m.end():]
    elif kind == 2:  # an index
        idx = list(re.finditer(r"\[[^\]]*\]", ln))
        if idx:
            m = rng.choice(idx)
            new = rng.choice(["[l]", "[l-0]", "[l+1]", "[l-1]", "[l-2]", "[l, i]", "[i]", "[J]", "[1]", "[0]",
                              "[l-2147483648]", "[l, i-1]", "[l, i+1]", "[]", ""])
            ln = ln[:m.start()] + new + ln[m.end():]
    elif kind == 3:  # an option into a primitive call
        calls = [m.end() - 1 for m in re.finditer(r"\w+\([^()]*\)", ln)]
        if calls:
            at = rng.choice(calls)
            ln = ln[:at] + rng.choice(OPTIONS) + ln[at:]
    elif kind == 4:  # one primitive for another
        prims = [m for m in re.finditer(r"\b(" + "|".join(_prim_names()) + r")\b", ln)]
        if prims:
            m = rng.choice(prims)
            ln = ln[:m.start()] + rng.choice(_prim_names()) + ln[m.end():]
    elif kind == 5:  # drop the line
        lines.pop(k)
        return "\n".join(lines)
    elif kind == 6:  # a new line
        lines.insert(k, rng.choice(LINES))
        return "\n".join(lines)
    elif kind == 7:  # duplicate a line elsewhere
        lines.insert(rng.choice(body), ln)
        return "\n".join(lines)
    else:  # a token dropped
        toks = list(re.finditer(r"\S+", ln))
        if toks:
            m = rng.choice(toks)
            ln = ln[:m.start()] + ln[m.end():]
    lines[k] = ln
    return "\n".join(lines)


def mutants(n: int, seed: int = 0):
    """n seeded mutants (1 to 3 edits each), cycling through every shipped spec."""
    rng = random.Random(seed)
    bases = base_specs()
    for k in range(n):
        path, text = bases[k % len(bases)]
        for _ in range(rng.choice((1, 1, 2, 3))):
            text = mutate(text, rng)
        yield f"{path} mutant {k}", text


# ---------------------------------------------------------------- specs generated from the grammar

def generated_spec(draw) -> str:
    """A random spec in the grammar's shape: spaces, operator definitions composed from the primitive table
    with random options, and an MgNet-like scheme; `draw(list)` picks one element (hypothesis or random)."""
    from mgdsl.prims import PRIMS
    grids = draw([1, 2, 3, 4])
    size = draw([5, 7, 8, 9, 12, 16, 17])
    per = lambda: "[" + ", ".join(str(draw([1, 2, 3, 4])) for _ in range(grids)) + "]" if draw([0, 1]) else \
        str(draw([1, 2, 4]))
    cu, cf = per(), per()

    def term(name: str, src: str, dst: str, **fixed) -> str:
        p = PRIMS[name]
        args = []
        if p.refs:
            args.append(draw(["A[l]", "R[l]", "A"]))
        if p.sig:
            args.append(f"{src} -> {draw([dst] * 14 + [src, 'classes'])}")
        for o in p.options:
            if o.key in fixed:
                if fixed[o.key] is not None:
                    args.append(f"{o.key} {fixed[o.key]}")
            elif draw([0, 0, 0, 0, 1]):
                if o.bare:
                    args.append(str(draw(list(o.values))))
                elif o.flag:
                    args.append(draw([o.key, f"{o.key} 0"]))
                elif o.values:
                    args.append(f"{o.key} {draw(list(o.values))}")
                else:
                    args.append(f"{o.key} {draw([o.default, 2, 2, 0.5] if o.number is float else [1, 2, 3])}")
        return f"{name}({', '.join(args)})" if args else name

    convs = sorted(n for n in PRIMS if n.startswith("conv"))
    pointwise = ["relu", "bn", "relu . bn", "id", "scale", "delta . split"]

    def op(src: str, dst: str, main: str) -> str:
        """A composition: a main primitive with pointwise parts around it."""
        parts = [draw(pointwise) for _ in range(draw([0, 0, 1]))] + [main] + \
            [draw(pointwise) for _ in range(draw([0, 1, 1]))]
        return " . ".join(reversed(parts))

    keep = lambda src, dst: op(src, dst, draw([term(draw(convs), src, dst, stride=None)] * 12 +
                                              [term("laplace", src, dst), term(draw(sorted(PRIMS)), src, dst)]))
    down = lambda sp: op(sp, sp, draw([term(draw(convs), sp, sp, stride=2)] * 3 +
                                      ["avgpool2", "maxpool2", "maxpool3", term("restrict", sp, sp),
                                       term(draw(sorted(PRIMS)), sp, sp)]))
    up = lambda: op("u", "u", draw([term(f"deconv{draw([2, 3, 4])}", "u", "u"), term("prolong", "u", "u"),
                                    "transpose(R[l])", term(draw(sorted(PRIMS)), "u", "u")]))
    scope = lambda: draw(["[l]", "[l]", "", "[l, i]"])
    pi = draw(["Pi(u)", "Pi(u)", "0", "avgpool2(u)"])
    cyc = draw(["", "", "  cycle V\n  postsmooth 1\n  refine u = u + P(u[l+1] - u[l+1, 0])\n",
                "  cycle W\n  refine u = u + P(u[l+1])\n"])
    return f"""model gen {{
  input x : {draw([1, 3])} x {size} x {size}
  classes {draw([2, 10])}
  grids {grids}
  smooth {', '.join(str(draw([0, 1, 2])) for _ in range(grids))}
  space u = {cu}, f = {cf}
  f_in = {keep('x', 'f')}
  A{draw(["[l]", "[l]", ""])} = {keep('u', 'f')}
  B{scope()} = {keep('f', 'u')}
  Pi[l] = {down('u')}
  R[l] = {down('f')}
  P[l] = {up()}
  fc = linear(u -> classes)
{cyc}  init f = f_in(x); u = 0
  step u = u + B(f - A(u))
  coarsen u[l+1] = {pi}; f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output fc(avgpool(u))
}}
"""


def generated(n: int, seed: int = 0):
    rng = random.Random(seed)
    for k in range(n):
        yield f"generated {k}", generated_spec(lambda xs: rng.choice(xs))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=int, default=1500)
    ap.add_argument("--generated", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", type=int, default=5, help="defects to print in full")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    t0 = time.time()
    tallies = {}
    for label, cases in (("mutants", mutants(args.mutants, args.seed)), ("generated", generated(args.generated, args.seed))):
        tally = tallies[label] = Tally()
        for name, text in cases:
            tally.add(f"# {name}\n{text}", trial(text))
        print(f"{label}: {tally.line()}", flush=True)
    for tally in tallies.values():
        for text, detail in tally.defects[:args.show]:
            print("-" * 72 + f"\n{detail}\n{text}")
    print(f"{time.time() - t0:.0f} s")
    return 1 if any(t.defects for t in tallies.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

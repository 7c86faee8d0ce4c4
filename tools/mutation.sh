#!/usr/bin/env bash
# Mutation testing with mutmut (3.x), one module at a time, with the tests that exercise it.
#
#   tools/mutation.sh MODULE [TEST_FILE ...]
#   tools/mutation.sh mgdsl/check.py                        # the test files listed below for that module
#   tools/mutation.sh mgdsl/check.py tests/test_budget.py   # or name them
#
# Each run works in a scratch copy of the working tree (MUTATION_DIR, default .mutation/NAME in the
# checkout, ignored by git),
# so the checkout is never mutated and runs for different modules do not share state. The mutmut
# configuration is the [mutmut] section of a setup.cfg written into that copy:
#   only_mutate = MODULE; pytest_add_cli_args_test_selection = the test files; process_isolation =
#   forkserver (torch is not fork-safe). mutmut then runs, for each mutant, only the selected tests that
#   execute the mutated function. PYTHONPATH is unset: mutmut puts its mutated tree first on sys.path
#   itself, and the tests' own subprocesses (python -m mgdsl, torchrun) run from that tree (the tests'
#   conftest changes into it) and read the active mutant from MUTANT_UNDER_TEST.
# Environment: PYTEST_ARGS extra pytest arguments, e.g.
#   PYTEST_ARGS="--deselect tests/test_lower.py::test_torch_compile_fullgraph_tiny_model" (30 s a run);
# JOBS (default 2) parallel mutants, TIMEOUT (default 3600 s) for the whole run,
# ONLY=FILE checks only the mutants named in FILE (one a line: the survivors of an earlier run, to see which
# a new test kills); SAMPLE=N checks only N mutants (the first of each function, then a uniform random sample; the score is
# then an estimate over the checked ones), KEEP=0 deletes mutmut's mutated tree at the end.
# Prints the counts and the surviving mutants (with diffs), and writes them to $MUTATION_DIR/report.txt.
# Install: pip install 'mutmut>=3.8,<4'   (the `mutation` extra of pyproject.toml).
set -euo pipefail

module=${1:?usage: tools/mutation.sh MODULE [TEST_FILE ...]}
shift
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  # the test files that exercise each module (keep in step with docs/testing.md)
  case "$module" in
    mgdsl/check.py)     tests=(tests/test_check.py tests/test_budget.py tests/test_sharing_table.py
                               tests/test_fixed_operators.py) ;;
    mgdsl/lowering.py)  tests=(tests/test_lower.py tests/test_init.py tests/test_official.py tests/test_golden.py
                               tests/test_prims.py tests/test_smoothers.py tests/test_solve.py)
                        PYTEST_ARGS=${PYTEST_ARGS:---deselect tests/test_lower.py::test_torch_compile_fullgraph_tiny_model} ;;
    mgdsl/elaborate.py) tests=(tests/test_elaborate.py tests/test_check.py tests/test_located_errors.py tests/test_budget.py) ;;
    mgdsl/equiv.py|mgdsl/numerics.py|mgdsl/forms.py|mgdsl/normal.py)
                        tests=(tests/test_equiv.py tests/test_equiv_paths.py tests/test_equiv_corpus.py
                               tests/test_equiv_localise.py tests/test_equiv_witness.py) ;;
    mgdsl/training/loop.py)
                        tests=(tests/test_loop.py tests/test_train.py tests/test_train_faults.py tests/test_options.py
                               tests/test_recipes.py tests/test_metrics.py)
                        PYTEST_ARGS=${PYTEST_ARGS:-"-k 'not torchrun and not full_imagenet and not sync_bn_gives'"} ;;
    mgdsl/training/metrics.py)
                        tests=(tests/test_metrics.py tests/test_stream.py) ;;
    mgdsl/solve.py)     tests=(tests/test_solve.py tests/test_smoothers.py tests/test_options.py)
                        PYTEST_ARGS=${PYTEST_ARGS:--k "not sync and not amp and not channels and not compile"} ;;
    *) echo "no default tests for $module: name them" >&2; exit 2 ;;
  esac
fi
[ -f "$module" ] || { echo "no such module: $module" >&2; exit 2; }
command -v mutmut >/dev/null || { echo "mutmut is not installed: pip install 'mutmut>=3.8,<4'" >&2; exit 2; }

root=$(git rev-parse --show-toplevel)
name=$(basename "$module" .py)
work=${MUTATION_DIR:-$root/.mutation/$name}
rm -rf "$work"
mkdir -p "$work"
# the working tree as it is (tracked and untracked, not ignored files), without .git
(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$work"
# what was copied (the report is written at the end, when HEAD may have moved on)
source="$(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && git diff --quiet HEAD -- "$module" || echo ' (with uncommitted changes)')"
{
  echo "[mutmut]"
  echo "source_paths = mgdsl"
  echo "only_mutate = $module"
  printf 'also_copy =\n    grammars\n    specs\n    docs\n    tools\n    README.md\n'  # what the tests read
  echo "pytest_add_cli_args_test_selection ="
  for t in "${tests[@]}"; do echo "    $t"; done
  printf 'pytest_add_cli_args =\n    -p\n    no:cacheprovider\n'  # one argument a line
  eval "extra=(${PYTEST_ARGS:-})"  # shell quoting respected: -k "not a and not b" is two arguments
  for a in "${extra[@]}"; do echo "    $a"; done
  echo "process_isolation = forkserver"
  echo "timeout_multiplier = 5"
  echo "timeout_constant = 60"  # a busy machine: forking a worker and collecting tests take seconds
} > "$work/setup.cfg"
# pyproject.toml's [tool.mutmut] would take precedence over setup.cfg: drop any such section in the copy
python - "$work/pyproject.toml" <<'PY'
import re, sys
p = sys.argv[1]
try:
    t = open(p).read()
except FileNotFoundError:
    sys.exit()
open(p, "w").write(re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", t))
PY

cd "$work"
unset PYTHONPATH  # a PYTHONPATH entry for the tree hides mutmut's trampolines from its stats run
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
start=$(date +%s)
set +e
if [ -n "${ONLY:-}" ]; then
  # exactly the mutants named in the file $ONLY (one name a line, e.g. the survivors of an earlier run)
  only=$(realpath "$ONLY")
  timeout "${TIMEOUT:-3600}" nice -n 10 mutmut run --max-children "${JOBS:-2}" $(cat "$only") > run.log 2>&1
  rc=$?
elif [ -n "${SAMPLE:-}" ]; then
  # Phase 1 generates every mutant, records which tests reach which function, and checks the first mutant
  # of each function; phase 2 checks a uniform random sample (seed 0) of the others, SAMPLE mutants in all.
  timeout "${TIMEOUT:-3600}" nice -n 10 mutmut run --max-children "${JOBS:-2}" "*__mutmut_1" > run.log 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    python - "mutants/$module.meta" "$SAMPLE" > sample.txt <<'PY'
import json, random, sys
codes = json.load(open(sys.argv[1]))["exit_code_by_key"]
rest = sorted(k for k, v in codes.items() if v is None)
done = len(codes) - len(rest)
random.seed(0)
print("\n".join(random.sample(rest, max(0, min(len(rest), int(sys.argv[2]) - done)))))
PY
    if [ -s sample.txt ]; then
      timeout "${TIMEOUT:-3600}" nice -n 10 mutmut run --max-children "${JOBS:-2}" $(cat sample.txt) >> run.log 2>&1
      rc=$?
    fi
  fi
else
  timeout "${TIMEOUT:-3600}" nice -n 10 mutmut run --max-children "${JOBS:-2}" > run.log 2>&1
  rc=$?
fi
set -e
secs=$(( $(date +%s) - start ))
if [ $rc -eq 124 ] || [ $rc -eq 143 ]; then
  echo "mutmut stopped by the ${TIMEOUT:-3600} s timeout: the counts below are partial" | tee -a run.log
elif [ $rc -ne 0 ]; then
  tail -n 30 run.log >&2
  echo "mutmut failed (exit $rc); the log is $work/run.log" >&2
  exit 1
fi

mutmut results --all true > results.txt 2>&1 || true
{
  echo "module: $module"
  echo "tests: ${tests[*]} ${PYTEST_ARGS:-}"
  echo "source: $source (the tree as copied at the start)"
  echo "mutmut: $(mutmut --version 2>/dev/null || pip show mutmut | grep ^Version)"
  echo "seconds: $secs (exit $rc)"
  python - results.txt <<'PY'
import collections, sys
counts = collections.Counter()
for line in open(sys.argv[1]):
    if ":" in line and "__mutmut_" in line:
        counts[line.rsplit(":", 1)[1].strip()] += 1
counts.pop("not checked", None)  # outside the sample
total = sum(counts.values())
killed = counts.get("killed", 0)
print("counts:", dict(counts))
if total:
    print(f"score: {killed}/{total} killed = {100 * killed / total:.1f}%"
          f" (timeouts, counted as not killed: {counts.get('timeout', 0)}; no tests reach: {counts.get('no tests', 0)})")
PY
  echo
  echo "surviving mutants:"
  for m in $(grep -E ": (survived|no tests)$" results.txt | cut -d: -f1); do
    echo "--- $m"
    mutmut show "$m" 2>/dev/null | sed -n '1,40p'
  done
} > report.txt
sed -n '1,/^score/p' report.txt
echo "report: $work/report.txt"
if [ "${KEEP:-1}" != 1 ]; then rm -rf "$work/mutants"; fi

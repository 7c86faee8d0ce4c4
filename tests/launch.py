"""One way for the tests to start a torchrun job on this machine's CPU (gloo), shared by every torchrun test.

A launch whose worker died by a signal is run once more: a crash in gloo or the launcher was seen twice in
about 20 runs on a loaded 2-core machine (rank 1 exit -6; in the in-process test of tests/test_loop.py the
same crash said "terminate called without an active exception", after training had finished). A Python error in a worker
exits with its own status and message, and is not retried; a deterministic crash, such as ranks that disagree
on their collectives, fails the same way twice, and then the test fails with both reports. The retry writes
to the same --out, which the first attempt's folder is moved away from first."""
import os
import re
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _killed_by_a_signal(r: subprocess.CompletedProcess) -> bool:
    """A worker that ended by a signal (torchrun reports `exitcode: -N`); a Python error in mgdsl exits 1-3 or
    70 instead, with its own message."""
    return r.returncode != 0 and re.search(r"exitcode\s*:\s*-\d+", r.stderr) is not None


def _set_aside(args) -> None:
    """Move the first attempt's --out folder to OUT.first-attempt: the retry starts from a fresh folder (rank 0
    may have written a complete run before rank 1 died, and a run folder is never overwritten)."""
    if "--out" in args:
        out = args[args.index("--out") + 1]
        if os.path.exists(out):
            os.replace(out, f"{out}.first-attempt")


def torchrun(args, *, nproc: int = 2, launcher=(), env=None, timeout: int = 300, retry: bool = True):
    """`python -m torch.distributed.run --nproc_per_node=nproc [launcher] args`; args starts with a script or
    with "-m", "module". Returns the CompletedProcess (stderr holds both attempts' when it was retried)."""
    env = dict(os.environ if env is None else env, OMP_NUM_THREADS="1")

    def once():
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                               f"--master_port={free_port()}", *launcher, *args],
                              capture_output=True, text=True, env=env, timeout=timeout)
    r = once()
    if retry and _killed_by_a_signal(r):
        first = r.stderr
        _set_aside(args)
        r = once()
        r.stderr = f"{r.stderr}\n--- the first attempt, retried after a worker died by a signal ---\n{first}"
    return r


def report(r: subprocess.CompletedProcess) -> str:
    """What a failed launch said: the start of stderr (the workers' own messages) and its end (torchrun's)."""
    return r.stderr if len(r.stderr) < 4000 else f"{r.stderr[:2000]}\n[...]\n{r.stderr[-2000:]}"

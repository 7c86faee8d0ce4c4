"""Surviving faults: every RNG state for an exact mid-epoch resume, SIGTERM/Ctrl-C stop at a step boundary,
and a torchrun restart that finds its own run folder again."""
from __future__ import annotations

import json
import os
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

# exit statuses of a run stopped by a signal: 128 + the signal number, as a shell reports them
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


def rng_states() -> dict:
    """Python, numpy, torch CPU and every CUDA device: the global generators a step can draw from. (A resumed
    epoch's data order, crops and flips are replayed from (seed, epoch), so no data generator is saved.)"""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized()
            else None}


def restore_rng(states: dict) -> None:
    """Put back what rng_states saved."""
    if states.get("python") is not None:  # a checkpoint of an older mgdsl holds only "torch"
        random.setstate(states["python"])
    if states.get("numpy") is not None:
        np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@dataclass
class StopRequest:
    """Set by SIGTERM or Ctrl-C; the loop checks it between steps, writes a checkpoint and exits.

    Stopping between steps (never inside one) is what makes the checkpoint consistent: a signal that raised
    inside optimizer.step() would leave half the parameters updated. A second Ctrl-C stops at once.
    """
    signum: int | None = None
    _previous: dict = field(default_factory=dict)

    def _handle(self, signum, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "StopRequest":
        for s in EXIT_STATUS:
            try:
                self._previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: signals stay as they were
                pass
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)

    def agreed(self, world: int, device: torch.device) -> bool:
        """True on every rank when any rank was asked to stop (ranks must leave at the same step)."""
        if world == 1:
            return self.signum is not None
        import torch.distributed as dist
        flag = torch.tensor([0 if self.signum is None else int(self.signum)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and self.signum is None:
            self.signum = int(flag.item())
        return bool(flag.item())

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS.get(signal.Signals(self.signum), 128 + int(self.signum)) if self.signum else 0


def attempt_store():
    """torchrun's env:// store under a prefix per attempt: a restarted job must not read the addresses its
    killed attempt left there (measured: gloo then connects to a dead port and hangs or fails, torch 2.14).
    The count is the same on every rank of one node; see the README for several nodes."""
    import torch.distributed as dist
    store, _, _ = next(dist.rendezvous("env://"))
    return dist.PrefixStore(f"mgdsl/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def restarted() -> bool:
    """True in a process that torchrun started again after a failure (--max-restarts)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def job_id() -> str | None:
    """What stays the same across torchrun's restarts of one job and differs between jobs.

    torchrun's rendezvous id when the user gave one (multi-node runs must), else this node's torchrun agent:
    it restarts its workers itself, so their parent process is the same one.
    """
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    rid = os.environ["TORCHELASTIC_RUN_ID"]
    return rid if rid != "none" else f"{os.uname().nodename}:{os.getppid()}"


def own_run(out: Path) -> bool:
    """Whether the run in `out` was started by this torchrun job (so a restart may take it over)."""
    try:
        saved = json.loads((out / "config.json").read_text()).get("job")
    except (OSError, ValueError):
        return False
    return saved is not None and saved == job_id()


def inject_fault(rank: int, epoch: int, step: int) -> None:
    """Fault injection for tests and drills: MGDSL_FAULT=SIGNAL:RANK:EPOCH:STEP (e.g. KILL:1:0:3) sends the
    signal to this process after that step (epoch from 0, step from 1), in torchrun's first attempt only."""
    spec = os.environ.get("MGDSL_FAULT")
    if not spec or restarted():
        return
    sig, r, e, s = spec.split(":")
    if (int(r), int(e), int(s)) == (rank, epoch, step):
        os.kill(os.getpid(), getattr(signal, f"SIG{sig}"))


def find_own_run(base: str, numbered: bool) -> Path | None:
    """The run folder this torchrun job wrote: `base` itself, or (numbered) the last of base, base-2, ..."""
    from .runs import holds_run
    if not numbered:
        return Path(base) if own_run(Path(base)) else None
    found, k, out = None, 1, Path(base)
    while holds_run(out):
        if own_run(out):
            found = out
        k += 1
        out = Path(f"{base}-{k}")
    return found

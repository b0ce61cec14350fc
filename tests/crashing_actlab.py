"""Run ``actlab`` with a fault injected at a chosen write call (crash-safety tests, ``benchmarks/stress_crash.py``).

Usage::

    ACTLAB_TEST_CRASH="<kind>:<n>[:<action>]" python tests/crashing_actlab.py record --out RUN ...

``kind`` names the calls that are counted (1-based, per process, across threads):

- ``put``: ``zarr.storage._local._put``, every chunk and metadata write of zarr's ``LocalStore``;
- ``replace``: ``os.replace``, every atomic rename (actlab's and zarr's);
- ``checkpoint``: the write of the serialised checkpoint file inside ``save_checkpoint`` (after its digest file);
- ``complete``: ``RunWriter.mark_complete``, the run's final commit.

``action``:

- ``kill`` (default): SIGKILL this process at the n-th call, before the call happens; for ``checkpoint``
  half of the serialised checkpoint is written to its temporary file first, then the process dies;
- ``enospc``: the n-th call and every later call of that kind fail as on a full disk (``OSError(ENOSPC)``;
  for ``checkpoint`` after half of it is written to its temporary file, which the writer removes);
- ``stall``: block for an hour at the n-th call (a writer that holds its lock until the test kills it).

``ACTLAB_TEST_CRASH_LOG=FILE`` appends one line per counted call (``kind n detail``) to FILE, to choose n.

:class:`Server` is a fork server: one warm process (torch, zarr and actlab imported) that forks each
run, so that a crash test pays the seconds of imports once. A forked run is a separate process with
its own pid, exit status, stdout and stderr, exactly as above.
"""

from __future__ import annotations

import errno
import io
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ENV = "ACTLAB_TEST_CRASH"
LOG_ENV = "ACTLAB_TEST_CRASH_LOG"
KINDS = ("put", "replace", "checkpoint", "complete")
ACTIONS = ("kill", "enospc", "stall")

def parse(spec: str) -> tuple[str, int, str]:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[0] not in KINDS or not parts[1].isdigit() or int(parts[1]) < 1:
        raise SystemExit(f"{ENV} must be <kind>:<n>[:<action>] with kind in {KINDS}, n >= 1; got {spec!r}")
    action = parts[2] if len(parts) == 3 else "kill"
    if action not in ACTIONS:
        raise SystemExit(f"{ENV} action must be one of {ACTIONS}; got {action!r}")
    return parts[0], int(parts[1]), action


def install(spec: str | None = None, log: str | None = None) -> None:
    """Install the counting hooks; ``spec`` (``kind:n[:action]``) selects where the fault strikes."""
    import tempfile

    import zarr.storage._local as zarr_local

    import actlab.record.trainer
    import actlab.store
    from actlab.files import PARTIAL_SUFFIX

    target = parse(spec) if spec else None
    counts = dict.fromkeys(KINDS, 0)
    lock = threading.Lock()
    log_file = open(log, "a", buffering=1) if log else None  # noqa: SIM115 (lives as long as the process)

    def strike(kind: str, detail: object) -> str | None:
        """Count a call; return the action to take now, if any."""
        with lock:
            counts[kind] += 1
            n = counts[kind]
            if log_file is not None:
                log_file.write(f"{kind} {n} {detail}\n")
        if target is None or target[0] != kind:
            return None
        if n == target[1] or (n > target[1] and target[2] == "enospc"):
            return target[2]
        return None

    def act(action: str | None, detail: object) -> None:
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "stall":
            time.sleep(3600)
        elif action == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device", str(detail))

    real_put, real_replace, real_write_atomic = zarr_local._put, os.replace, actlab.record.trainer.write_atomic
    real_complete = actlab.store.RunWriter.mark_complete

    def put(path, value, *args, **kwargs):
        act(strike("put", path), path)
        return real_put(path, value, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        act(strike("replace", dst), dst)
        return real_replace(src, dst, *args, **kwargs)

    def write_checkpoint(path, data):
        path = Path(path)
        if path.suffix != ".pt":  # the checkpoint's digest file
            return real_write_atomic(path, data)
        action = strike("checkpoint", path)
        if action in ("kill", "enospc"):
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            Path(tmp).unlink()
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        act(action, path)
        return real_write_atomic(path, data)

    def mark_complete(self, *args, **kwargs):
        act(strike("complete", self.run_dir), self.run_dir)
        return real_complete(self, *args, **kwargs)

    zarr_local._put = put
    os.replace = replace
    actlab.record.trainer.write_atomic = write_checkpoint
    actlab.store.RunWriter.mark_complete = mark_complete


def run(argv: list[str]) -> int:
    """Install the hooks named by the environment, then run ``actlab argv``; the exit code."""
    from actlab.cli import main

    install(os.environ.get(ENV) or None, os.environ.get(LOG_ENV) or None)
    sys.argv = ["actlab", *argv]
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


# -- fork server ------------------------------------------------------------------------------------------


def _warm() -> None:
    """Import what a run imports (torch's optimiser pulls in torch._dynamo, seconds); start no thread."""
    import torch

    import actlab.cli.analyze  # noqa: F401
    import actlab.cli.record  # noqa: F401
    import actlab.record.api  # noqa: F401
    import actlab.report  # noqa: F401
    import actlab.store  # noqa: F401

    torch.optim.Adam(torch.nn.Linear(1, 1).parameters())
    assert threading.active_count() == 1


def _child(job: dict) -> None:
    """In a forked child: become the run ``job`` describes, then exit with its code."""
    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        out = os.open(job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)
        sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", buffering=0), write_through=True)
        for key, value in job.get("env", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if job.get("cwd"):
            os.chdir(job["cwd"])
        if job.get("umask") is not None:
            os.umask(job["umask"])
        code = run(job["argv"])
    except BaseException:  # as the interpreter would report it
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve() -> None:
    """Read one JSON request per line on stdin (``{"jobs": [...]}``); fork the jobs; answer their pids, then their codes."""
    _warm()
    replies = sys.stdout
    sys.stdout = sys.stderr
    for line in sys.stdin:
        request = json.loads(line)
        pids = []
        for job in request["jobs"]:
            pid = os.fork()
            if pid == 0:
                _child(job)
            pids.append(pid)
        replies.write(json.dumps({"pids": pids}) + "\n")
        replies.flush()
        codes = []
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            codes.append(os.waitstatus_to_exitcode(status))
        replies.write(json.dumps({"codes": codes}) + "\n")
        replies.flush()


@dataclass
class Result:
    pid: int
    returncode: int
    stdout: str
    stderr: str


class Started:
    """Runs forked together; :meth:`wait` collects them."""

    def __init__(self, server: Server, pids: list[int], jobs: list[dict]) -> None:
        self.server, self.pids, self.jobs = server, pids, jobs

    def wait(self, timeout: float = 120) -> list[Result]:
        reply = self.server._reply(timeout, kill=self.pids)
        return [Result(pid, code, Path(job["stdout"]).read_text(), Path(job["stderr"]).read_text())
                for pid, code, job in zip(self.pids, reply["codes"], self.jobs)]


class Server:
    """A warm process that forks ``actlab`` runs with a fault hook (see the module docstring)."""

    def __init__(self, workdir: str | os.PathLike, env: dict[str, str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._count = 0
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})

    def start(self, *runs: tuple[list[str], str | None] | dict) -> Started:
        """Fork runs together: each ``(argv, crash_spec)`` or a job dict (argv, env, umask, cwd)."""
        jobs = []
        for spec in runs:
            job = dict(spec) if isinstance(spec, dict) else {"argv": list(spec[0]), "env": {ENV: spec[1]}}
            self._count += 1
            job.setdefault("stdout", str(self.workdir / f"{self._count}.out"))
            job.setdefault("stderr", str(self.workdir / f"{self._count}.err"))
            jobs.append(job)
        self.proc.stdin.write(json.dumps({"jobs": jobs}) + "\n")
        self.proc.stdin.flush()
        return Started(self, self._reply(300)["pids"], jobs)

    def run(self, argv: list[str], crash: str | None = None, timeout: float = 120, **job) -> Result:
        """Fork one run and wait for it."""
        env = {ENV: crash, **job.pop("env", {})}
        return self.start({"argv": list(argv), "env": env, **job}).wait(timeout)[0]

    def _reply(self, timeout: float, kill: list[int] = ()) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            for pid in kill:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            ready, _, _ = select.select([self.proc.stdout], [], [], 30)
            if not ready:
                raise TimeoutError("the fork server does not answer")
            json.loads(self.proc.stdout.readline())
            raise TimeoutError(f"runs {kill} took longer than {timeout} s and were killed")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server exited with {self.proc.wait()}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        sys.exit(run(sys.argv[1:]))

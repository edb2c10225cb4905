"""Running a cosmic-ray session's mutants cheaply, for scripts/mutation.py: one warm worker
process imports the third-party modules winit and its tests import at their top (torch, pandas,
matplotlib, pydantic, pytest and its plugins: seconds per interpreter), once; for each mutant it
writes the mutated source into the private copy, forks, and the child runs pytest on the
mutant's tests. winit_cli itself is imported only in the child, after the fork, so each child
reads its own mutant; the worker then puts the pristine source back.

The session's database stays the state (each mutant's outcome recorded as cosmic-ray's own
`exec` records it: killed when pytest fails or the time limit passes, survived when it passes or
when no test runs the mutated lines), so resuming and reading results are cosmic-ray's.

    python scripts/mutation_worker.py ROOT     # the worker; requests as JSON lines on stdin
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

# Never imported ahead of the fork: winit's own code (each child must read the mutant) and
# modules whose import starts threads or servers (a fork copies no thread, so a lock one held
# would never be released in the child).
LOCAL = ("winit_cli", "tests", "conftest")
UNSAFE = ("ray", "tensorboard", "torch.utils.tensorboard", "duckdb", "pyarrow")
# Set (by a signal handler) to stop `execute` after the mutant in hand.
STOP = threading.Event()


def top_level_imports(root: Path) -> list[str]:
    """The modules imported at the top of winit_cli's and tests/' files (not inside functions:
    those are lazy on purpose), other than winit's own."""
    names: set[str] = set()
    for path in [*(root / "winit_cli").rglob("*.py"), *(root / "tests").rglob("*.py")]:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
    return sorted(n for n in names
                  if n.split(".")[0] not in LOCAL and not n.startswith(UNSAFE))


def preload(root: Path) -> list[str]:
    """Import what top_level_imports names and pytest's plugins; returns what was imported.
    A name that is not importable, or lies in the checkout (a test's helper module), is left
    to the child."""
    from importlib.metadata import entry_points

    loaded = []
    for name in top_level_imports(root):
        try:
            spec = importlib.util.find_spec(name.split(".")[0])
            if spec is None or (spec.origin and Path(spec.origin).resolve().is_relative_to(
                    root.resolve())):
                continue
            importlib.import_module(name)
            loaded.append(name)
        except Exception:  # noqa: BLE001 - an optional dependency absent here: the child tries
            continue
    for plugin in entry_points(group="pytest11"):
        try:
            plugin.load()
        except Exception:  # noqa: BLE001 - pytest reports a broken plugin itself, in the child
            continue
    leaked = [m for m in sys.modules if m.split(".")[0] in ("winit_cli", "conftest")]
    if leaked:
        raise SystemExit(f"preloading imported winit's own {leaked[0]}: the mutants would not "
                         "be read")
    return loaded


def run_mutant(path: Path, source: str, pytest_args: list[str], timeout: float) -> dict:
    """Write `source` into `path`, run pytest on it in a forked child (its own process group,
    killed whole past `timeout`), put the pristine source back; pytest's exit code (None when
    timed out) and the tail of its output."""
    pristine = path.read_text()
    with tempfile.TemporaryFile() as log:
        path.write_text(source)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            child = os.fork()
            if child == 0:  # pragma: no cover - the child ends in os._exit
                code = 3
                try:
                    os.setsid()
                    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                    os.dup2(log.fileno(), 1)
                    os.dup2(log.fileno(), 2)
                    import pytest

                    code = int(pytest.main(pytest_args))
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            code = wait(child, timeout)
        finally:
            path.write_text(pristine)
        log.seek(0)
        output = log.read()[-4000:].decode("utf-8", "replace")
    return {"code": code, "output": output}


def wait(child: int, timeout: float) -> int | None:
    """The child's exit code, or None after killing its process group at `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(child, signal.SIGKILL)
    os.waitpid(child, 0)
    return None


def serve(root: Path) -> None:
    """The worker: preload, say so, then one JSON reply per JSON request line on stdin."""
    requests, replies = sys.stdin, os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # nothing but replies on the reply channel (a preloaded module may print)
    loaded = preload(root)
    replies.write(json.dumps({"ready": len(loaded)}) + "\n")
    replies.flush()
    for line in requests:
        request = json.loads(line)
        reply = run_mutant(Path(request["path"]), request["source"], request["pytest_args"],
                           request["timeout"])
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


class Worker:
    """The warm worker process, started in the checkout `root` with `env`."""

    def __init__(self, root: Path, env: dict):
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(root)], cwd=root,
            env={**env, "PYTHONPATH": str(root)}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        ready = self.process.stdout.readline()
        if not ready:
            raise SystemExit("the mutation worker failed to start")

    def run(self, path: Path, source: str, pytest_args: list[str], timeout: float) -> dict:
        self.process.stdin.write(json.dumps({"path": str(path), "source": source,
                                             "pytest_args": pytest_args,
                                             "timeout": timeout}) + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline()
        if not reply:
            raise SystemExit("the mutation worker died")
        return json.loads(reply)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def execute(db_path: Path, module: Path, root: Path, env: dict, tests_for: Callable,
            pytest_args: list[str], timeout: Callable[[list[str]], float], seconds: float,
            seed: int) -> int:
    """Run the session's pending mutants of `module` (in the checkout `root`) for at most
    `seconds`, each against the tests `tests_for(pristine, mutated)` names and stopped past
    `timeout(those tests)` (counted killed: it hangs or loops); record each outcome
    in the session as it comes. Returns the number run. The mutants run in a random order
    (`seed`): a module cut short by its time box has run a random sample of its mutants, whose
    score estimates the whole module's."""
    import cosmic_ray.plugins
    from cosmic_ray.mutating import _make_diff, mutate_code
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult
    from mutation_session import mutant_key

    pristine = module.read_text()
    deadline = time.monotonic() + seconds
    worker = Worker(root, env)
    done = 0
    try:
        with use_db(str(db_path), WorkDB.Mode.open) as db:
            pending = sorted(db.pending_work_items, key=mutant_key)
            random.Random(seed).shuffle(pending)
            for item in pending:
                if time.monotonic() >= deadline or STOP.is_set():
                    break
                mutation = item.mutations[0]
                operator = cosmic_ray.plugins.get_operator(mutation.operator_name)(
                    **(getattr(mutation, "operator_args", None) or {}))
                mutated = mutate_code(pristine, operator, mutation.occurrence)
                if mutated is None:
                    db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.NO_TEST))
                    continue
                diff = "\n".join(_make_diff(pristine, mutated, mutation.module_path))
                tests = tests_for(pristine, mutated)
                if not tests:
                    outcome, output = TestOutcome.SURVIVED, "no test runs the mutated lines"
                else:
                    ran = worker.run(module, mutated, [*pytest_args, *tests], timeout(tests))
                    outcome = TestOutcome.SURVIVED if ran["code"] == 0 else TestOutcome.KILLED
                    output = "timeout" if ran["code"] is None else ran["output"]
                db.set_result(item.job_id, WorkResult(
                    output=output, diff=diff, test_outcome=outcome,
                    worker_outcome=WorkerOutcome.NORMAL))
                done += 1
    finally:
        worker.close()
        module.write_text(pristine)
    return done


if __name__ == "__main__":
    serve(Path(sys.argv[1]))

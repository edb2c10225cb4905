"""Stop signals that arrive where raising is unsafe or before a command starts: exit 143 (SIGTERM),
130 (Ctrl-C) whenever they come, never swallowed, never reported as success, SIGTERM never as
Ctrl-C's 130; a signal ignored when winit starts (nohup) stays ignored. Each signal
is sent by the process to itself at a chosen point, so nothing depends on timing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from winit_cli import interrupts

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "corpus" / "runs"


def _winit_with(patch: str, *args: str) -> subprocess.CompletedProcess:
    """`winit ARGS` through its real entry point, after `patch` (Python) has run."""
    script = textwrap.dedent(patch) + textwrap.dedent(f"""
        import sys
        from winit_cli.cli import main
        sys.argv = ["winit", *{list(args)!r}]
        main()
    """)
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)


@pytest.mark.parametrize(("sig", "said"), [(signal.SIGTERM, "interrupted by SIGTERM: "),
                                          (signal.SIGINT, "interrupted: ")])
def test_a_stop_signal_inside_a_weakref_callback_is_not_swallowed(sig, said):
    """The signal lands while a weakref callback runs (where an exception raised is printed as
    'Exception ignored' and dropped: the command once ran on and exited 0). Ctrl-C too: Python's
    own handler raised its KeyboardInterrupt there."""
    proc = _winit_with(f"""
        SIG = {int(sig)}
    """ + """
        import os, signal, weakref
        import winit_cli.app.schemes as schemes
        real = schemes.scheme_rows

        class Box:
            pass

        def signalled(_):
            os.kill(os.getpid(), SIG)
            for _ in range(1000):  # a loop: Python runs the handler here, inside the callback
                pass

        def rows(*args):
            box = Box()
            ref = weakref.ref(box, signalled)
            del box
            return real(*args)

        schemes.scheme_rows = rows
    """, "schemes")
    assert proc.returncode == 128 + sig, proc.stderr
    assert "Exception ignored" not in proc.stderr
    assert said + "what was measured so far is saved" in proc.stderr


def test_a_signal_ignored_when_winit_starts_stays_ignored():
    """`nohup winit ...` ignores SIGHUP (and a shell script's background job SIGINT): the
    terminal closing must not stop the run, as it does not stop any other program."""
    proc = _winit_with("""
        import os, signal
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup leaves it
        import winit_cli.app.schemes as schemes
        real = schemes.scheme_rows

        def rows(*args):
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(1000):
                pass
            return real(*args)

        schemes.scheme_rows = rows
    """, "schemes")
    assert proc.returncode == 0, proc.stderr
    assert "interrupted" not in proc.stderr and "he_normal" in proc.stdout


def test_sigterm_before_a_command_starts_exits_143_with_a_message():
    """Before the command's body (while it imports torch): Typer turned the interruption into
    its Ctrl-C code, 130, with no message."""
    proc = _winit_with("""
        import os, signal
        import winit_cli.cli.common as common
        real = common.user_errors

        def signalled_first():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
            return real()

        common.user_errors = signalled_first
    """, "schemes")
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "interrupted by SIGTERM" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_signal_during_a_blocking_wait_raises_at_once():
    """Inside `interruptible()` (a lock wait in the kernel) the signal raises in the handler:
    a flag alone would leave the wait blocked until another process let go."""
    previous = signal.getsignal(signal.SIGHUP)
    try:
        interrupts.stop_on(signal.SIGHUP)
        with pytest.raises(interrupts.Terminated) as raised, interrupts.interruptible():
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(1000):
                pass
            pytest.fail("the wait went on after the signal")
        assert raised.value.signum == signal.SIGHUP
        interrupts.check()  # raised once: the saving that follows is not interrupted again
    finally:
        signal.signal(signal.SIGHUP, previous)
        interrupts.received = None


def test_sigterm_while_waiting_for_a_held_index_lock_stops_the_wait(tmp_path):
    """Another process holds runs.csv's lock and hangs (a FIFO, a stopped process): SIGTERM
    still ends the wait for it (a flag alone would leave the kernel wait blocked for ever)."""
    import threading

    from winit_cli.records.index import _locked

    index = tmp_path / "runs.csv"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, sys, time
        lock = open({str(tmp_path / '.runs.csv.lock')!r}, "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert holder.stdout.readline().strip() == "held"
        interrupts.stop_on(signal.SIGTERM)
        # Before or during the wait, the outcome is the same: the wait ends with Terminated.
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        with pytest.raises(interrupts.Terminated), _locked(index):
            pytest.fail("the lock was granted while another process held it")
    finally:
        signal.signal(signal.SIGTERM, previous)
        interrupts.received = None
        holder.kill()
        holder.wait()


def _two_groups(tmp_path):
    results = tmp_path / "R"
    for scheme in ("he_normal", "normal"):
        shutil.copytree(CORPUS / "good", results / scheme)
        summary = json.loads((results / scheme / "summary.json").read_text())
        summary.update(run_id=scheme, scheme=scheme, activation=scheme == "normal" and "tanh"
                       or summary["activation"])
        (results / scheme / "summary.json").write_text(json.dumps(summary))
    return results


def test_sigterm_while_a_worker_draws_stops_the_report_and_its_workers(tmp_path):
    """Figures saved by worker processes (views/plots.Painter): a SIGTERM to the report while a
    worker draws (the worker then waits for ever) stops the report at its next safe point, the
    worker too; exit 143, no report swapped in, no worker left behind."""
    results = _two_groups(tmp_path)
    proc = _winit_with("""
        import os, signal
        import winit_cli.views.plots as plots
        plots.MAX_PAINTERS, plots.PAINTERS_FROM_RUNS = 2, 0
        report_pid, real = os.getpid(), plots.save

        def save(figure, path, *args, **kwargs):
            if os.getpid() != report_pid:  # in a worker
                print("worker", os.getpid(), flush=True)
                os.kill(report_pid, signal.SIGTERM)
                # as a worker forked a moment before the report stops does: it still has the
                # report's handler, which only sets a flag (a SIGTERM would not end it)
                signal.signal(signal.SIGTERM, lambda *_: None)
                signal.pause()  # until the report ends this worker
            return real(figure, path, *args, **kwargs)

        plots.save = save
    """, "report", str(results))
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "interrupted by SIGTERM" in proc.stderr
    # a worker killed in the middle of its print (the report stops it as soon as it acts on
    # the signal, which it may do while writing its text) leaves a line without its pid
    workers = [int(parts[1]) for parts in map(str.split, proc.stdout.splitlines())
               if parts[:1] == ["worker"] and len(parts) == 2]
    assert workers
    for pid in workers:  # ended by the report, not left waiting
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (results / "report").exists()


def test_sigterm_while_a_report_draws_stops_it_before_the_next_group(tmp_path):
    """The report's figures came after its last safe point: a SIGTERM while they were drawn
    waited for every group (7.9 s of 11 on quickstart runs; minutes for a hundred groups). Now
    each group is a safe point: two groups, the signal during the first one's figures, and the
    second is never drawn; exit 143, no report swapped in. (Figures saved in this process: with
    workers, the next test.)"""
    results = _two_groups(tmp_path)
    proc = _winit_with("""
        import os, signal
        import winit_cli.views.plots as plots
        plots.MAX_PAINTERS = 1
        real, saved = plots.save, []

        def save(figure, path, *args, **kwargs):
            saved.append(path.name)
            print("saved", path.name, flush=True)
            if len(saved) == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            return real(figure, path, *args, **kwargs)

        plots.save = save
    """, "report", str(results))
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "interrupted by SIGTERM" in proc.stderr
    drawn = [ln for ln in proc.stdout.splitlines() if ln.startswith("saved")]
    assert drawn and len({"tanh" in ln for ln in drawn}) == 1, drawn  # one group's figures
    assert not (results / "report").exists()

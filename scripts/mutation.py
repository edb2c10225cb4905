"""Mutation testing, on demand, of the modules whose numbers users read (not part of CI: slow).

Each module is mutated by cosmic-ray (one small change at a time: an operator, a number, a
comparison, a boolean) in a private copy of the committed tree (HEAD: commit first), and the
module's own fast tests run against each mutant; a mutant they do not fail "survived". The score
is killed / (killed + survived), over a fixed sample (--sample, --seed), with a 95% Wilson
interval; --minutes time-boxes each module.

    WINIT_EXTRAS=dev,ray,tensorboard,docs,mutation bash scripts/setup.sh --tests  # cosmic-ray
    .venv/bin/python scripts/mutation.py --out A              # every module, 40 mutants each
    .venv/bin/python scripts/mutation.py probes --sample 0    # all mutants of one
    .venv/bin/python scripts/mutation.py --tests-ref main --carry A --out B   # main's tests, A's
    .venv/bin/python scripts/mutation.py --out A --before B --docs           # docs block
    .venv/bin/python scripts/mutation.py --full --out F    # every mutant of every module
    .venv/bin/python scripts/mutation.py --full --out F --docs              # its docs block
    .venv/bin/python scripts/mutation.py --full --tier integration --out I MODULE...

--full mutates every module of winit_cli/, every mutant, each against the unit tests that ran
the lines it changed (scripts/mutation_targets.py), in a random order (a module cut short has
run a random sample); no time box unless --minutes is given, and rerun with the same --out it
goes on where it stopped (SIGTERM stops it cleanly after the mutant in hand). With --tier
integration the map and the tests are the integration tier's (whole CLI runs in subprocesses,
each measured too; not Ray or Chromium): seconds a mutant, for the modules that only it runs.
The mutants run in one warm process that imports torch, pandas, pytest... once and forks a
child per mutant (scripts/mutation_worker.py): about 1.3 s a mutant where a fresh interpreter
took 8.3 s.

Left out before sampling, as carrying no information: mutations inside annotations (strings
under `from __future__ import annotations`, never evaluated), and arithmetic replaced by shifts
or bitwise operators (a TypeError on any float, killed by any test that runs the line).

Writes <out>/<module>/{survivors.md, result.json} and <out>/summary.md. Rerun with the same --out
to resume a module cut short (killed, or past its time box) with the mutants it has not run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import mutation_targets
import mutation_worker
from mutation_report import full_block, readme_block, results, rewrite_docs, summary_line
from mutation_session import (
    forget_survivors,
    outcomes,
    restore_deferred,
    same_mutants,
    select,
)

REPO = Path(__file__).resolve().parents[1]
PYTHON = Path(sys.executable)

# The tests of batching before issue 16 moved them to test_batched_members.py (for --tests-ref).
OLD_BATCHING = ["test_sweep.py::test_batched_step0_equals_one_by_one",
                "test_sweep.py::test_a_diverging_member_changes_nothing_for_its_neighbours"]
# Fastest first: with -x a killed mutant stops at the first failure.
TRAINING = ["test_sweep.py::test_first_nonfinite_layer_follows_the_order_values_arise",
            "test_training.py", "test_training_schedule.py",
            "test_training_loop.py", "test_training_reference.py",
            "test_batched_members.py", "test_subnormals.py",
            *OLD_BATCHING, "test_golden.py"]
INITS = ["test_inits.py", "test_schemes.py"]
# module name -> (source file, the fast tests that exercise it); tests are named by file name and
# found wherever they sit under tests/ (`present`); missing tests are left out, so the same table
# serves an older checkout's tests (--tests-ref).
MODULES: dict[str, tuple[str, list[str]]] = {
    "probes": ("winit_cli/measure/probes.py",
               ["test_probes.py", "test_probes_numerics.py"]),
    "recorder": ("winit_cli/measure/recorder.py",
                 ["test_probes.py", "test_probes_numerics.py",
                  "test_training_reference.py"]),
    "diagnose": ("winit_cli/diagnosis/verdict.py", ["test_verdict.py"]),
    "theory": ("winit_cli/theory/mean_field.py", ["test_theory.py"]),
    "inits.registry": ("winit_cli/inits/registry.py", [*INITS, "test_config.py"]),
    "inits.classic": ("winit_cli/inits/classic.py", INITS),
    "inits.scaling": ("winit_cli/inits/scaling.py", INITS),
    "inits.structured": ("winit_cli/inits/structured.py",
                         [*INITS, "test_predict_lsuv.py"]),
    "training.loop": ("winit_cli/training/loop.py", TRAINING),
    "training.step": ("winit_cli/training/step.py", TRAINING),
    "training.schedule": ("winit_cli/training/schedule.py", TRAINING),
    "sweeps.plan": ("winit_cli/sweeps/plan.py", ["test_sweep.py",
                                                  "test_sweep_resume.py"]),
    "records.rows": ("winit_cli/records/rows.py", ["test_report_grid.py",
                                                    "test_report.py"]),
}
# Tests too slow to run once per mutant (subprocesses, whole CLI runs); other tests cover them.
DESELECT = ["test_schemes.py::test_winit_run_with_lsuv",
            "test_sweep.py::test_killed_sweep_resumes_with_nothing_lost_or_duplicated",
            "test_sweep.py::test_process_executor_gives_the_in_process_results",
            # whole reports with every figure (10-17 s each); rows are checked by the others
            "test_report.py::test_same_results_give_byte_identical_files",
            "test_report.py::test_figures_in_other_formats",
            "test_report.py::test_filters_select_runs",
            "test_report.py::test_a_run_directory_is_reported_beside_it_not_inside",
            "test_report.py::test_cli_report_writes_the_report",
            "test_report.py::test_cli_lists_incomplete_runs"]
# With --tests-ref, these stay as they are here: they set up how the tests run (torch threads,
# tiers), not what they check. By file name: an older tests/ may be laid out otherwise.
INFRASTRUCTURE = ("conftest.py", "test_golden.py")


def copy_checkout(dest: Path, tests_ref: str | None) -> None:
    """The committed tree at HEAD (uncommitted edits are not mutated: commit first), with tests/
    from `tests_ref` if given (but for INFRASTRUCTURE, kept from HEAD)."""
    def extract(ref: str, paths: list[str], keep) -> None:
        archive = subprocess.run(["git", "archive", "--format=tar", ref, *paths], cwd=REPO,
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data", members=[m for m in tar if keep(m.name)])

    def replaced(name: str) -> bool:
        return name.startswith("tests/") and Path(name).name not in INFRASTRUCTURE

    extract("HEAD", [], lambda name: not (tests_ref and replaced(name)))
    if tests_ref:
        extract(tests_ref, ["tests"], replaced)


def present(tests: list[str], root: Path) -> list[str]:
    """The test files and node ids that exist under `root`, as paths from `root`: each test file
    is named by its file name and found wherever it sits under tests/ (once, or it is not)."""
    kept = []
    for t in tests:
        file, sep, name = t.partition("::")
        found = sorted((root / "tests").rglob(file))
        if len(found) == 1 and (not name or re.search(
                rf"^def {re.escape(name)}\(", found[0].read_text(), re.M)):
            kept.append(found[0].relative_to(root).as_posix() + sep + name)
    return kept


def full_name(path: str) -> str:
    """A module's name in the full run: its path under winit_cli/, dotted (theory.mean_field)."""
    return path.removeprefix("winit_cli/").removesuffix(".py").replace("/", ".")


def targets(name: str, args, out: Path) -> tuple[str, list[str]]:
    """The module's source file and the tests run against each of its mutants: MODULES' files
    for the sample, or with --full the unit tests that run any line of it (mutation_targets)."""
    if not args.full:
        return MODULES[name]
    module = "winit_cli/" + name.replace(".", "/") + ".py"
    return module, tier_map(args, out).get(module, [])


def tier_map(args, out: Path) -> dict[str, list[str]]:
    """mutation_targets.build on a copy of HEAD, once per --out (then read back), of --tier's
    tests; with --add-tests, those test files recorded into it (once: the option is then
    dropped)."""
    tier_file = out / "map_tier.txt"
    if (out / "test_map.json").exists():
        made = tier_file.read_text().strip() if tier_file.exists() else "unit"
        if made != args.tier:
            raise SystemExit(f"{out} holds a map of the {made} tier; --tier {args.tier} needs "
                             "its own --out")
    if not (out / "test_map.json").exists() or args.add_tests:
        copy = out / "map-checkout"
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir(parents=True)
        copy_checkout(copy, args.tests_ref)
        if not (out / "test_map.json").exists():
            print(f"mapping which {args.tier} tests run each module (the tier once, under "
                  "coverage)", flush=True)
            mutation_targets.build(copy, out, test_env(copy, args), args.tier)
            tier_file.write_text(args.tier + "\n")
        if args.add_tests:
            print(f"adding {', '.join(args.add_tests)} to the map", flush=True)
            mutation_targets.extend(copy, out, test_env(copy, args), args.add_tests, args.tier)
            args.add_tests = []
        shutil.rmtree(copy)
        mutation_targets.record_trees(REPO, out, args.tests_ref)
    return json.loads((out / "test_map.json").read_text())


def test_env(copy: Path, args) -> dict:
    return {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1",
            "WINIT_TEST_MNIST": str(args.mnist), "WINIT_TEST_FASHION_MNIST": str(args.fashion)}


def run_module(name: str, args, out: Path) -> dict:
    """Mutate one module; a module whose session was cut short (killed, time-boxed) resumes
    where it stopped, one that finished is read back."""
    work = out / name
    module, tests = targets(name, args, out)
    if (work / "result.json").exists():
        result = json.loads((work / "result.json").read_text())
        if (result["not_run"] == 0 and not args.retest_survivors) or args.docs:
            return result
    if args.docs:
        raise SystemExit(f"{name}: no results in {work}; run the module first")
    if args.retest_survivors and (work / "session.sqlite").exists():
        forget_survivors(work / "session.sqlite")
    db, config, plan_file = work / "session.sqlite", work / "cosmic-ray.toml", work / "plan.json"
    resuming = plan_file.exists()
    copy = work / "checkout"
    shutil.rmtree(copy, ignore_errors=True)  # a killed run may have left a mutant in place
    copy.mkdir(parents=True)
    copy_checkout(copy, args.tests_ref)
    source, pristine = (copy / module).read_text(), work / "pristine.py"
    if resuming and pristine.exists() and pristine.read_text() != source:
        # the session's mutants are positions in the old source: they would land elsewhere
        print(f"{name}: changed since its session began; mutating it afresh", flush=True)
        resuming = False
    if not resuming:
        for entry in work.iterdir():
            if entry != copy:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        pristine.write_text(source)
    deselect = [f"--deselect={t}" for t in present(DESELECT, copy)]
    pytest_args = ["-x", "-q", "-p", "no:cacheprovider", *deselect]
    if args.full:  # each mutant runs the tests of the lines it changed (mutation_targets)
        (work / "tests.txt").write_text("".join(f"{t}\n" for t in tests))
        lines = mutation_targets.line_map(out, module)

        def tests_for(pristine: str, mutated: str) -> list[str]:
            return mutation_targets.tests_for_mutant(lines, pristine, mutated)
        # unmutated, every test of the module runs (and must pass): that sets the timeout
        check = [str(PYTHON), "-m", "pytest", *pytest_args, f"@{(work / 'tests.txt').resolve()}"]
    else:
        fixed = present(tests, copy)

        def tests_for(pristine: str, mutated: str) -> list[str]:
            return fixed
        check = [str(PYTHON), "-m", "pytest", *pytest_args, *fixed]
    env = test_env(copy, args)
    if not resuming:
        carried = outcomes(args.carry / name / "session.sqlite") if args.carry else None
        plan_file.write_text(json.dumps(start_session(name, module, check, env, copy, config,
                                                      db, args, out, carried)))
    plan = json.loads(plan_file.read_text())
    # the mutant's own tests set its time limit where the map timed them (an integration
    # module's whole list takes minutes: four times that let one hanging mutant eat the box)
    timed = json.loads((out / "coverage.data.seconds.json").read_text()) if args.full else {}

    def timeout(tests: list[str]) -> float:
        if timed and all(t in timed for t in tests):
            return per_mutant_timeout(sum(timed[t] for t in tests))
        return per_mutant_timeout(plan["test_seconds"])
    print(f"{name}: {plan['sampled']} of {plan['candidates']} mutants, tests "
          f"{plan['test_seconds']:.0f} s unmutated{' (resumed)' if resuming else ''}", flush=True)
    started = time.perf_counter()
    ran = mutation_worker.execute(db, copy / module, copy, env, tests_for, pytest_args, timeout,
                                  args.minutes * 60, args.seed)
    if time.perf_counter() - started >= args.minutes * 60:
        print(f"{name}: time box of {args.minutes} min reached", flush=True)
    restore_deferred(db)
    spent = time.perf_counter() - started
    earlier = json.loads((work / "result.json").read_text()) if (work / "result.json").exists() \
        else {}  # resumed: add the earlier sessions' seconds
    # the warm worker's own count, apart from sessions cosmic-ray's `exec` ran (a fresh
    # interpreter per mutant, several times slower), for the estimate of what is left
    paced = {"seconds": round(spent + earlier.get("seconds", 0.0), 1),
             "worker_mutants": ran + earlier.get("worker_mutants", 0),
             "worker_seconds": round(spent + earlier.get("worker_seconds", 0.0), 1)}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    result = {"module": module, "tests": tests, "tests_ref": args.tests_ref or "HEAD",
              "seed": args.seed, "commit": commit, **paced, **plan, **results(db)}
    (work / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    (work / "survivors.md").write_text("".join(
        f"### line {s['line']}: {s['operator']}\n\n```diff\n{s['diff']}\n```\n\n"
        for s in result["survivors"]))
    shutil.rmtree(copy)
    return result


def baseline(name: str, command: list[str], env: dict, copy: Path, out: Path) -> float:
    """Seconds the tests take unmutated; they must pass. Modules sharing a test command share
    one run (out/baselines.json)."""
    cache = out / "baselines.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    key = " ".join(command[1:])
    if key in known:
        return known[key]
    started = time.perf_counter()
    run = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"{name}: the tests fail before any mutation:\n{run.stdout[-3000:]}")
    cache.write_text(json.dumps({**known, key: round(seconds, 1)}, indent=2))
    return seconds


def per_mutant_timeout(seconds: float) -> float:
    """A mutant whose tests run past this counts as killed (it hangs or loops)."""
    return max(120.0, 4 * seconds)


def write_config(config: Path, module: Path, check: list[str], seconds: float) -> None:
    """cosmic-ray's config, for `cosmic-ray init` (which lists the mutants); the mutants are run
    by mutation_worker, not by cosmic-ray's `exec`."""
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{module}"\n'
        f"timeout = {per_mutant_timeout(seconds):.0f}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(' '.join(check))}\n"
        '[cosmic-ray.distributor]\nname = "local"\n')


def start_session(name, module, check, env, copy, config, db, args, out, carried) -> dict:
    """Run the tests (`check`) once unmutated (they must pass; their time sets the per-mutant
    timeout), create the cosmic-ray session and choose the sample."""
    seconds = (args.full and mutation_targets.mapped_seconds(
        REPO, out, args.tests_ref, targets(name, args, out)[1])) or \
        baseline(name, check, env, copy, out)
    write_config(config, copy / module, check, seconds)
    subprocess.run([str(PYTHON.parent / "cosmic-ray"), "init", str(config), str(db)], cwd=copy,
                   check=True, capture_output=True)
    candidates, sampled = select(db, (copy / module).read_text(), args.sample, args.seed,
                                 carried)
    return {"candidates": candidates, "sampled": sampled, "test_seconds": round(seconds, 1)}


def shared(folder: str, env_var: str) -> Path:
    """The test data folder, found as tests/conftest.py finds it."""
    if os.environ.get(env_var):
        return Path(os.environ[env_var])
    found = [p / "shared" / "data" / folder for p in REPO.parents]
    return next((p for p in found if p.is_dir()), found[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--full", action="store_true",
                        help="every mutant of every module of winit_cli (or of those named, "
                             "dotted: theory.mean_field), each against the unit tests that run "
                             "the module; needs --out, resumes there")
    parser.add_argument("--add-tests", nargs="+", default=[], metavar="TEST_FILE",
                        help="with --full: record these test files (added since --out's map "
                             "was made) into the map first; with --retest-survivors they meet "
                             "the survivors they were written for")
    parser.add_argument("--tier", choices=sorted(mutation_targets.TIERS), default="unit",
                        help="with --full: whose tests make the map and run against each "
                             "mutant (integration: for modules no unit test runs; its own --out)")
    parser.add_argument("--sample", type=int, default=40, help="mutants per module (0: all)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=None,
                        help="time box per module (default 30; none with --full)")
    parser.add_argument("--tests-ref", help="take tests/ from this git ref (e.g. main)")
    parser.add_argument("--carry", type=Path,
                        help="run the mutants this earlier --out ran, carrying its survivors")
    parser.add_argument("--retest-survivors", action="store_true",
                        help="rerun --out's surviving mutants against the tests at HEAD")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default: a new folder under the system temp)")
    parser.add_argument("--docs", action="store_true",
                        help="run nothing: rewrite the docs' mutation block (docs/testing.md) "
                             "from --out (and --before)")
    parser.add_argument("--before", type=Path, help="with --docs: the --tests-ref run's --out")
    parser.add_argument("--mnist", type=Path, default=shared("mnist", "WINIT_TEST_MNIST"))
    parser.add_argument("--fashion", type=Path,
                        default=shared("fashion-mnist", "WINIT_TEST_FASHION_MNIST"))
    args = parser.parse_args()
    args.minutes_given = args.minutes is not None
    args.minutes = args.minutes if args.minutes_given else 30.0
    known = [full_name(m) for m in mutation_targets.every_module(REPO)] if args.full \
        else list(MODULES)
    unknown = sorted(set(args.modules) - set(known))
    if unknown:
        parser.error(f"unknown module {unknown[0]}; known: {', '.join(known)}")
    if (args.docs or args.full) and not args.out:
        parser.error("--docs reads --out; --full resumes there")
    if args.full:
        args.sample, args.minutes = 0, args.minutes if args.minutes_given else 24 * 60.0
    out = args.out or Path(tempfile.mkdtemp(prefix="winit-mutation-"))
    out.mkdir(parents=True, exist_ok=True)
    names = args.modules or known
    if args.full and args.docs:
        page = rewrite_docs(full_block(out, names, tier=args.tier),
                            "mutation-full" if args.tier == "unit" else "mutation-integration")
        print(f"the full mutation block of {page} rewritten")
        return
    # SIGTERM (kill PID) ends the run after the mutant in hand, its results recorded
    signal.signal(signal.SIGTERM, lambda *_: mutation_worker.STOP.set())
    lines = ["| module | killed | survived | incompetent | not run | mutants | score | 95% |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    after = {}
    for name in names:
        if args.full and not targets(name, args, out)[1]:
            print(f"{name}: no {args.tier} test runs it; left out", flush=True)
            continue
        after[name] = run_module(name, args, out)
        lines.append(summary_line(name, after[name]))
        print(lines[-1], flush=True)
        if mutation_worker.STOP.is_set():
            print("stopped (SIGTERM); rerun with the same --out to go on", flush=True)
            break
    if args.docs:
        paired = {name: same_mutants(out / name, args.before / name)
                  for name in names} if args.before else {}
        tests_ref = json.loads((args.before / names[0] / "result.json").read_text())[
            "tests_ref"] if args.before else "-"
        page = rewrite_docs(readme_block(after, paired, tests_ref))
        print(f"the mutation block of {page} rewritten")
        return
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines) + f"\n\nresults in {out}")


if __name__ == "__main__":
    main()

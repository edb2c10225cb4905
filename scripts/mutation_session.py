"""A cosmic-ray session's database, for scripts/mutation.py: which mutants are run (noise and
annotations left out, a sample chosen), their outcomes by a key that holds across sessions, and
survivors made pending again to rerun them against newer tests."""

from __future__ import annotations

import ast
import random
import re
import sqlite3
from pathlib import Path

# Arithmetic turned into a shift or bitwise operator: a TypeError on floats, so trivially killed.
NOISE = re.compile(r"core/ReplaceBinaryOperator_(Add|Sub|Mul|Div|FloorDiv|Mod|Pow)_"
                   r"(LShift|RShift|BitAnd|BitOr|BitXor)$")


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    spans = []
    for node in ast.walk(ast.parse(source)):
        notes = []
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            notes.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            notes.append(node.returns)
        spans += [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in notes]
    return spans


def select(db_path: Path, source: str, sample: int, seed: int,
           carried: dict | None = None) -> tuple[int, int]:
    """Mark noise and unsampled mutants skipped; returns (candidates, sampled). With `carried`
    (outcomes by mutant, from a run with more tests: --carry), the sample is the mutants run
    there, and those that survived there are recorded as surviving here without a run (a mutant
    more tests miss, fewer miss too)."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    spans = annotation_spans(source)

    def informative(m) -> bool:
        start = tuple(m.start_pos)
        return not NOISE.match(m.operator_name) and not any(a <= start < b for a, b in spans)

    with use_db(str(db_path), WorkDB.Mode.open) as db:
        items = sorted(db.pending_work_items, key=mutant_key)
        candidates = [i for i in items if all(informative(m) for m in i.mutations)]
        if carried is not None:
            chosen = [i for i in candidates if mutant_key(i) in carried]
        else:
            chosen = candidates if not sample or sample >= len(candidates) else \
                random.Random(seed).sample(candidates, sample)
        keep = {i.job_id for i in chosen}
        for item in items:
            if item.job_id not in keep:
                db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED,
                                                      output="not sampled"))
            elif carried is not None and carried[mutant_key(item)] == TestOutcome.SURVIVED:
                db.set_result(item.job_id, WorkResult(
                    worker_outcome=WorkerOutcome.NORMAL, test_outcome=TestOutcome.SURVIVED,
                    output="carried: survived the --carry run's tests"))
    return len(candidates), len(chosen)


def mutant_key(item) -> tuple[str, int]:
    """A mutant's identity across sessions of the same source (job ids are random)."""
    return (item.mutations[0].operator_name, item.mutations[0].occurrence)


def outcomes(db_path: Path) -> dict:
    """The test outcome of each mutant run in a session, by mutant_key."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome

    with use_db(str(db_path), WorkDB.Mode.open) as db:
        return {mutant_key(item): result.test_outcome
                for item, result in db.completed_work_items
                if result.worker_outcome != WorkerOutcome.SKIPPED}



def same_mutants(after: Path, before: Path) -> tuple[int, int, int]:
    """(mutants both runs ran, killed before, killed after) on those mutants."""
    from cosmic_ray.work_item import TestOutcome

    now, then = outcomes(after / "session.sqlite"), outcomes(before / "session.sqlite")
    both = [k for k in then if k in now]
    return (len(both), sum(then[k] == TestOutcome.KILLED for k in both),
            sum(now[k] == TestOutcome.KILLED for k in both))


def forget_survivors(db_path: Path) -> None:
    """Make the mutants that survived (not carried) pending again, to rerun them against the
    tests as they are now (tests only added since can kill more, never fewer); the mutants not
    yet run wait (`deferred`) until `restore_deferred`."""
    with sqlite3.connect(db_path) as db:
        db.execute("INSERT INTO work_results (worker_outcome, output, job_id) "
                   "SELECT 'SKIPPED', 'deferred', job_id FROM work_items WHERE job_id NOT IN "
                   "(SELECT job_id FROM work_results)")
        db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED' "
                   "AND output NOT LIKE 'carried%'")


def restore_deferred(db_path: Path) -> None:
    with sqlite3.connect(db_path) as db:
        db.execute("DELETE FROM work_results WHERE output = 'deferred'")

"""Reading a mutation session's results (scripts/mutation.py) and writing them out: the score
with its 95% interval, the summary table, the docs' mutation block (docs/testing.md)."""

from __future__ import annotations

import math
from pathlib import Path

from docblocks import results_markers, rewrite_block  # scripts/docblocks.py, beside this one


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def results(db_path: Path) -> dict:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    counts = {"killed": 0, "survived": 0, "incompetent": 0, "carried": 0}
    survivors = []
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.test_outcome == TestOutcome.SURVIVED:
                counts["survived"] += 1
                counts["carried"] += (result.output or "").startswith("carried")
                m = item.mutations[0]
                survivors.append({"operator": m.operator_name, "line": m.start_pos[0],
                                  "diff": result.diff})
            elif result.test_outcome == TestOutcome.KILLED:
                counts["killed"] += 1
            else:
                counts["incompetent"] += 1
        pending = sum(1 for _ in db.pending_work_items)
    scored = counts["killed"] + counts["survived"]
    low, high = wilson(counts["killed"], scored)
    return {**counts, "not_run": pending, "score": counts["killed"] / scored if scored else None,
            "interval95": [low, high], "survivors": sorted(survivors, key=lambda s: s["line"])}


def summary_line(name: str, r: dict) -> str:
    score = "n/a" if r["score"] is None else f"{100 * r['score']:.0f}%"
    low, high = r["interval95"]
    interval = "" if r["score"] is None else f"{100 * low:.0f}-{100 * high:.0f}%"
    return (f"| {name} | {r['killed']} | {r['survived']} | {r['incompetent']} | {r['not_run']} "
            f"| {r['sampled']} of {r['candidates']} | {score} | {interval} |")


def changed_lines(diff: str | None) -> str:
    """A mutant's diff as `old` -> `new` (its removed and added lines, stripped)."""
    lines = (diff or "").splitlines()
    old = [line[1:].strip() for line in lines if line.startswith("-") and
           not line.startswith("---") and line[1:].strip()]
    new = [line[1:].strip() for line in lines if line.startswith("+") and
           not line.startswith("+++") and line[1:].strip()]
    return f"`{' '.join(old)}` -> " + (f"`{' '.join(new)}`" if new else "removed")


def readme_block(after: dict[str, dict], paired: dict[str, tuple[int, int, int]],
                 tests_ref: str) -> str:
    """The README's mutation table and surviving mutants, from the runs' results. `paired`: per
    module, (mutants run by both runs, killed before, killed after) on those same mutants."""
    first = next(iter(after.values()))
    lines = [f"cosmic-ray, seed {first['seed']}. Before: the tests at `{tests_ref}`; after: this "
             "checkout's; both on the same code.", "",
             "| module | mutants run (of all) | killed after | after, 95% "
             "| same mutants: killed before -> after |",
             "| --- | --- | --- | --- | --- |"]
    for name, r in after.items():
        low, high = r["interval95"]
        run = r["killed"] + r["survived"] + r["incompetent"]
        score = "-" if r["score"] is None else \
            f"{r['killed']}/{r['killed'] + r['survived']} ({100 * r['score']:.0f}%)"
        interval = "-" if r["score"] is None else f"{100 * low:.0f}-{100 * high:.0f}%"
        n, before, now = paired.get(name, (0, 0, 0))
        lines.append(f"| {name} | {run} ({r['candidates']}) | {score} | {interval} "
                     f"| {f'{before} -> {now} of {n}' if n else '-'} |")
    total = {k: sum(r[k] for r in after.values()) for k in ("killed", "survived")}
    n, before, now = (sum(p[i] for p in paired.values()) for i in range(3))
    lines.append(f"| all | {sum(total.values())} | {total['killed']}/{sum(total.values())} "
                 f"({100 * total['killed'] / sum(total.values()):.0f}%) | "
                 f"| {before} -> {now} of {n} |")
    lines += ["", "Mutants that survived this checkout's tests:", ""]
    lines += [f"- {name}, line {s['line']} ({s['operator'].split('/')[-1]}): "
              f"{changed_lines(s['diff'])}"
              for name, r in after.items() for s in r["survivors"]]
    return "\n".join(lines)


def rewrite_docs(text: str, name: str = "mutation") -> Path:
    """The docs' `<!-- results:NAME -->` block replaced by `text` (planted_bugs.py too), in the
    page that holds it (docs/testing.md); returns that page."""
    return rewrite_block(*results_markers(name), text)


def full_block(out: Path, names: list[str], root: Path | None = None,
               explanations: Path | None = None, tier: str = "unit") -> str:
    """The docs' block of the full run (mutation.py --full --docs): per module, the mutants run
    and killed so far; the modules not yet (or not wholly) run; an estimate of the time the rest
    takes, from the seconds per mutant measured so far and the mutants per line of source."""
    import json

    lines = ["| module | mutants | killed | survived | of them harmless | not run yet | score "
             "| 95% | score, harmless left out |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    done, waiting, untested, survivors, harmless = {}, [], [], [], []
    reasons = explained(explanations or EXPLAINED)
    for name in names:
        path = out / name / "result.json"
        if not path.exists():
            (waiting if (out / "test_map.json").exists() and _mapped(out, name) else
             untested).append(name)
            continue
        r = done[name] = json.loads(path.read_text())
        scored = r["killed"] + r["survived"]
        low, high = r["interval95"]
        score = "-" if not scored else f"{100 * r['score']:.0f}%"
        interval = "-" if not scored else f"{100 * low:.0f}-{100 * high:.0f}%"
        why = [reasons.get((name, s["line"], s["operator"].split("/")[-1]))
               for s in r["survivors"]]
        r["harmless"] = sum(w is not None for w in why)
        real = scored - r["harmless"]
        without = f"{100 * r['killed'] / real:.0f}%" if real else "-"
        lines.append(f"| {name} | {r['candidates']} | {r['killed']} | {r['survived']} "
                     f"| {r['harmless']} | {r['not_run']} | {score} | {interval} | {without} |")
        for s, w in zip(r["survivors"], why, strict=True):
            entry = (f"- {name}, line {s['line']} ({s['operator'].split('/')[-1]}): "
                     f"{changed_lines(s['diff'])}")
            (survivors if w is None else harmless).append(entry + ("" if w is None else
                                                                   f". Harmless: {w}"))
    run = sum(r["killed"] + r["survived"] + r["incompetent"] for r in done.values())
    seconds = sum(r.get("seconds", 0.0) for r in done.values())
    killed = sum(r["killed"] for r in done.values())
    scored = killed + sum(r["survived"] for r in done.values())
    if scored:
        real = scored - len(harmless)
        lines.append(f"| all so far | {sum(r['candidates'] for r in done.values())} | {killed} "
                     f"| {scored - killed} | {len(harmless)} "
                     f"| {sum(r['not_run'] for r in done.values())} "
                     f"| {100 * killed / scored:.0f}% | | {100 * killed / real:.0f}% |")
    lines.append("")
    commits = sorted({r.get("commit", "?") for r in done.values()})
    if commits:
        lines += [f"Mutated at commit {', '.join(commits)}; a module cut short by its time box "
                  "(`not run yet` > 0) has run a random sample of its mutants (seeded), so its "
                  "score estimates the module's and the 95% interval is that sample's.", ""]
    worker_run = sum(r.get("worker_mutants", 0) for r in done.values())
    worker_seconds = sum(r.get("worker_seconds", 0.0) for r in done.values())
    if run and seconds:
        root = root or Path(__file__).resolve().parents[1]
        per_line = sum(r["candidates"] for r in done.values()) / sum(
            _source_lines(root, r["module"]) for r in done.values())
        rest = sum(r["not_run"] for r in done.values()) + per_line * sum(
            _source_lines(root, "winit_cli/" + n.replace(".", "/") + ".py") for n in waiting)
        # the pace of the warm worker (mutation_worker) where it ran any, else of all sessions
        pace = worker_seconds / worker_run if worker_run else seconds / run
        lines.append(f"{run} mutants run in {_duration(seconds)}"
                     + (f", {worker_run} of them by the warm worker in "
                        f"{_duration(worker_seconds)} ({pace:.1f} s each)" if worker_run else
                        f" ({pace:.1f} s each)")
                     + f"; the {len(waiting)} modules not yet run and the rest of those cut "
                     f"short hold about {rest:.0f} more ({per_line:.2f} mutants per line so "
                     f"far): {_duration(rest * pace)} more at that pace.")
        lines.append("")
    if waiting:
        lines += [f"Not yet mutated: {', '.join(waiting)}.", ""]
    if untested:
        lines += [f"No {tier} test runs any line of (left out): {', '.join(untested)}.", ""]
    lines += ["Survivors not yet killed by a test nor explained:", "", *(survivors or ["- none"]),
              "", f"Survivors explained as harmless ({(explanations or EXPLAINED).name}, keyed by "
              "module, line and operator):", "", *(harmless or ["- none"])]
    return "\n".join(lines)


EXPLAINED = Path(__file__).with_name("mutation_explained.yaml")


def explained(path: Path) -> dict[tuple[str, int, str], str]:
    """(module, line, operator) -> why a mutant surviving there is harmless, from `path`: per
    module, a list of {line, operators, why}; a survivor listed there is counted apart."""
    import yaml

    table = yaml.safe_load(path.read_text()) if path.exists() else {}
    return {(module, entry["line"], operator): entry["why"]
            for module, entries in (table or {}).items() for entry in entries
            for operator in entry["operators"]}


def _mapped(out: Path, name: str) -> bool:
    import json

    tests = json.loads((out / "test_map.json").read_text())
    return bool(tests.get("winit_cli/" + name.replace(".", "/") + ".py"))


def _source_lines(root: Path, module: str) -> int:
    path = root / module
    return len(path.read_text().splitlines()) if path.exists() else 0


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"

"""``audit``: check a random sample of the routed pseudo-labels; their precision with a 95% interval.

    serieslabeler audit --workspace WS draw [--size 30] [--seed S]
    serieslabeler audit --workspace WS answer --images id,id (--correct | --label X)
    serieslabeler audit --workspace WS report [--json]
"""
from __future__ import annotations

import argparse

from serieslabeler.cli.base import Result, add_common
from serieslabeler.cli.commands.label import _split
from serieslabeler.errors import PipelineError
from serieslabeler.labels.log import interaction_count
from serieslabeler.loop.audit import (
    DEFAULT_AUDIT_SIZE,
    answer_audit,
    audit_report,
    draw_audit,
    load_audit,
)
from serieslabeler.store.workspace import Workspace


def register(subparsers) -> None:
    parser = subparsers.add_parser("audit", help="audit the routed pseudo-labels: a random sample, your answers, their precision")
    add_common(parser)
    parser.add_argument("--author", default="cli", help="who answers (kept in the log)")
    actions = parser.add_subparsers(dest="audit_action", required=True, metavar="ACTION")
    draw = actions.add_parser("draw", help="draw a seeded sample of the pending pseudo-labels, stratified by class")
    draw.add_argument("--size", type=int, default=DEFAULT_AUDIT_SIZE, help=f"images to audit (default {DEFAULT_AUDIT_SIZE})")
    draw.add_argument("--seed", type=int, default=0)
    draw.set_defaults(run=run_draw)
    answer = actions.add_parser("answer", help="your answer for audited images: correct, or their right label")
    answer.add_argument("--images", required=True, help="audited image ids, comma-separated")
    choice = answer.add_mutually_exclusive_group(required=True)
    choice.add_argument("--correct", action="store_true", help="their pseudo-labels are right (they are accepted)")
    choice.add_argument("--label", help="their right label (they are labeled with it)")
    answer.set_defaults(run=run_answer)
    report = actions.add_parser("report", help="precision of the routed labels from the answers, with a 95%% interval")
    report.set_defaults(run=run_report)
    for sub in (draw, answer, report):
        # also after the action; SUPPRESS keeps a --json given before it
        sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object as the last line")


def run_draw(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        audit = draw_audit(workspace, args.size, args.seed, author=args.author)
    text = (f"audit {audit.id}: {len(audit.items)} of {sum(audit.population.values())} pending pseudo-labels drawn "
            f"(by class {audit.population}); images {', '.join(str(i.image_id) for i in audit.items)}")
    return Result({"ok": True, "audit": audit.to_dict()}, text)


def _ids(text: str) -> list[int]:
    try:
        return [int(v) for v in _split(text)]
    except ValueError:
        raise PipelineError(f"--images: '{text}' is not a comma-separated list of image ids") from None


def run_answer(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        audit = answer_audit(workspace, _ids(args.images), correct=args.correct, label=args.label, author=args.author)
        total = interaction_count(workspace)
    left = audit.unanswered_ids
    text = f"audit {audit.id}: {len(audit.answered)} answered, {len(left)} to go; interactions so far: {total}"
    return Result({"ok": True, "audit": audit.to_dict(), "interactions": total}, text)


def run_report(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        audit = load_audit(workspace)
    report = audit_report(audit)
    if report is None:
        return Result({"ok": True, "audit": audit.to_dict(), "report": None},
                      f"audit {audit.id}: no answers yet ({len(audit.items)} images drawn)")
    return Result({"ok": True, "audit": audit.to_dict(), "report": report}, format_report(report))


def format_report(report: dict) -> str:
    overall = report["overall"]
    lines = [f"audit {report['audit_id']}: {report['answered']} of {report['drawn']} answered; precision of the "
             f"{report['routed']} routed labels {overall['estimate']:.1%}, 95% interval {overall['low']:.1%}-{overall['high']:.1%}"
             + ("" if report["complete"] else " (some classes have no answer yet)")]
    for label, scores in report["per_class"].items():
        if "note" in scores:
            lines.append(f"  {label}: {scores['successes']}/{scores['n']} right ({scores['note']} for an interval)")
        else:
            lines.append(f"  {label}: {scores['successes']}/{scores['n']} right, 95% interval {scores['low']:.1%}-{scores['high']:.1%}")
    return "\n".join(lines)

"""Series commands: ``series`` (list series, or one with its labels and proposal) and
``label-series`` (label a series by its stage boundaries, or accept the model's proposal)."""
from __future__ import annotations

import pandas as pd

from serieslabeler import labels
from serieslabeler.cli.base import Result, add_common
from serieslabeler.cli.commands.label import _split
from serieslabeler.errors import PipelineError
from serieslabeler.ingest import readable_time
from serieslabeler.loop.series import propose_series
from serieslabeler.store.series import get_series, list_series, save_split, saved_split
from serieslabeler.store.workspace import Workspace
from serieslabeler.views import image_details


def register(subparsers) -> None:
    parser = subparsers.add_parser("series", help="list the series (one subject, optionally one attribute value, in time order)")
    add_common(parser)
    parser.add_argument("--split-by", metavar="ATTR",
                        help="one series per subject and value of this attribute (default: the saved split, if any); "
                             "'none': one per subject")
    parser.add_argument("--remember", action="store_true",
                        help="save --split-by as the workspace's series: routing, held-out scores and the oracle's rounds "
                             "then decode each part's series on its own")
    parser.add_argument("--series", metavar="SUBJECT[/ATTR=VALUE]", help="show this series' images, boundaries and proposal")
    parser.set_defaults(run=run_series)

    parser = subparsers.add_parser("label-series", help="label a series by the first image of each stage")
    add_common(parser)
    parser.add_argument("--author", default="cli", help="who labels (kept in the log)")
    parser.add_argument("--session", type=int, help="the labeling session this counts toward")
    parser.add_argument("--series", required=True, metavar="SUBJECT[/ATTR=VALUE]", help="the series")
    parser.add_argument("--boundaries", metavar="STAGE@IMAGE_ID,...", help="first image of each stage, in time order")
    parser.add_argument("--exclude", default="", help="image ids that do not belong to the series, comma-separated")
    parser.add_argument("--include", default="",
                        help="image ids clicked out of the series before, to take back in (they stay out otherwise)")
    parser.add_argument("--accept-proposal", action="store_true",
                        help="accept the latest model's monotone proposal; with --boundaries: the proposal corrected to them "
                             "(1 interaction plus one per boundary moved, placed or removed)")
    parser.add_argument("--model", type=int, help="the model whose proposal to accept (default: the latest)")
    parser.set_defaults(run=run_label_series)


def run_series(args) -> Result:
    if args.remember and args.split_by is None:
        raise PipelineError("--remember saves --split-by: give --split-by ATTR (or 'none')")
    with Workspace.open(args.workspace) as workspace:
        saved = saved_split(workspace)
        split = saved if args.split_by is None else (None if args.split_by == "none" else args.split_by)
        if args.remember:
            save_split(workspace, split)
            saved = split
        if args.series is None:
            found = list_series(workspace, split)
            rows = [s.to_dict() for s in found]
            text = "\n".join(f"{s.key}: {len(s)} image(s), {s.taken_at[0]} .. {s.taken_at[-1]}" for s in found)
            note = (f"series split by '{split}'" + (" (saved)" if split == saved else "")) if split else "one series per subject"
            return Result({"ok": True, "series": rows, "split_by": split, "saved_split": saved}, f"{note}\n{text or 'no series'}")
        series = get_series(workspace, args.series)
        current = labels.series_boundaries(workspace, series)
        data = {"ok": True, **series.to_dict(), "image_ids": list(series.image_ids), "boundaries": [list(b) for b in current]}
        text = f"{series.key}: {len(series)} image(s); boundaries: {labels.format_boundaries(current) or 'none'}"
        proposal = None
        if workspace.db.execute("SELECT 1 FROM models LIMIT 1").fetchone() and labels.vocabulary_order(workspace):
            proposal = propose_series(workspace, series)
            data["proposal"] = proposal.to_dict()
            text += f"\nproposal of model {proposal.model_id}: {labels.format_boundaries(proposal.boundaries)}"
        data["photos"] = series_photos(workspace, series, proposal)
        return Result(data, "\n".join([text, *map(photo_line, data["photos"])]))


def series_photos(workspace: Workspace, series, proposal) -> list[dict]:
    """Each photo of the series in time order: id, file, when, its label and source, whether it was
    clicked out of the series before, and the proposal's stage and confidence for it."""
    details = image_details(workspace, series.image_ids)
    clicked_out = labels.rejected_labels(workspace, series.image_ids).everything
    stages, confidence = (None, None) if proposal is None else (proposal.stages, proposal.confidence.tolist())
    return [{"image_id": int(row.image_id), "file": row.file, "taken_at": row.taken_at, "label": None if pd.isna(row.label) else row.label,
             "source": None if pd.isna(row.source) else row.source, "clicked_out": int(row.image_id) in clicked_out,
             "proposed": None if stages is None else stages[position],
             "proposed_confidence": None if confidence is None else confidence[position]}
            for position, row in enumerate(details.itertuples(index=False))]


def photo_line(photo: dict) -> str:
    label = f"{photo['label']} ({photo['source']})" if photo["label"] else "unlabeled"
    out = "  clicked out of the series" if photo["clicked_out"] else ""
    proposed = f"  proposed {photo['proposed']} {photo['proposed_confidence']:.2f}" if photo["proposed"] else ""
    return f"  image {photo['image_id']}  {photo['file']}  {readable_time(photo['taken_at'])}  {label}{proposed}{out}"


def _proposal_without(workspace: Workspace, series, model_id: int | None, excluded, include) -> list:
    """The model's proposed boundaries for ``series`` without the images this command leaves out
    (those it clicks out, and those clicked out before that it does not take back in)."""
    before = labels.rejected_labels(workspace, series.image_ids).everything
    return propose_series(workspace, series, model_id, labels.exclusions(excluded, include, before).out).boundaries


def run_label_series(args) -> Result:
    if not (args.boundaries or args.accept_proposal):
        raise PipelineError("give --boundaries STAGE@IMAGE_ID,..., --accept-proposal, or both (the proposal corrected to those boundaries)")
    with Workspace.open(args.workspace) as workspace:
        series = get_series(workspace, args.series)
        excluded, include = _split(args.exclude), _split(args.include)
        proposal = _proposal_without(workspace, series, args.model, excluded, include) if args.accept_proposal else None
        boundaries = labels.parse_boundaries(args.boundaries) if args.boundaries else proposal
        event = labels.label_series(
            workspace, series, boundaries, excluded, author=args.author, session_id=args.session, proposal=proposal,
            include=include,
        )
        total = labels.interaction_count(workspace)
        text = (
            f"event {event.id}: labeled {event.changed} image(s) of series '{series.key}' "
            f"({labels.format_boundaries(event.details['boundaries'])}); {event.interactions} interaction(s)"
            + (f"; {len(event.details['rejected_before'])} image(s) clicked out before stay out (--include to take them back)"
               if event.details["rejected_before"] else "")
            + f"\ninteractions so far: {total}"
        )
        return Result({"ok": True, "events": [event.to_dict()], "interactions": total}, text)

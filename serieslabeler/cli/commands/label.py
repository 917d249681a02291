"""Labeling commands: ``label``, ``label-images``, ``unlabel``, ``skip``, ``undo``, ``redo``, ``vocab``,
``pseudo``, ``labels``, ``session`` and ``export``. Each action prints the interactions spent so far."""
from __future__ import annotations

from serieslabeler import labels
from serieslabeler.cli.base import Result, add_common
from serieslabeler.clustering import require_clustering
from serieslabeler.errors import PipelineError
from serieslabeler.export import export_labels
from serieslabeler.loop.demo import undo_demo
from serieslabeler.progress import ProgressLine
from serieslabeler.store.workspace import Workspace


def register(subparsers) -> None:
    parser = subparsers.add_parser("label", help="label a cluster, minus the images clicked out of it")
    _actor(parser)
    _cluster(parser)
    parser.add_argument("--as", dest="label", required=True, help="the label for the cluster's images")
    parser.add_argument("--exclude", default="", help="image ids that do not belong, comma-separated")
    parser.add_argument("--include", default="",
                        help="image ids to label although you took this label from them before (they are clicked out for you otherwise)")
    parser.add_argument("--confidence", type=float, default=1.0, help="your confidence in the cluster, p_c in (0, 1]")
    parser.add_argument("--a", type=float, default=1.0, help="how fast confidence falls with distance to the centre")
    parser.add_argument("--iteration", type=int, help="the iteration these labels belong to")
    parser.set_defaults(run=run_label)

    parser = subparsers.add_parser("label-images", help="label images one by one (manual labels)")
    _actor(parser)
    parser.add_argument("--images", required=True, help="image ids, comma-separated")
    parser.add_argument("--as", dest="label", required=True, help="the label")
    parser.add_argument("--iteration", type=int, help="the iteration these labels belong to")
    parser.set_defaults(run=run_label_images)

    parser = subparsers.add_parser("unlabel", help="send labeled images back to the unlabeled pool")
    _actor(parser)
    parser.add_argument("--images", required=True, help="image ids, comma-separated")
    parser.set_defaults(run=run_unlabel)

    parser = subparsers.add_parser("skip", help="skip a cluster without a dominant class (its images stay unlabeled)")
    _actor(parser)
    _cluster(parser)
    parser.add_argument("--reason", help="why (kept in the log)")
    parser.set_defaults(run=run_skip)

    parser = subparsers.add_parser("undo", help="undo the last labeling events")
    _actor(parser)
    parser.add_argument("--n", type=int, default=1, help="how many events to undo (default 1)")
    _any_author(parser, "undo")
    parser.add_argument("--demo", action="store_true", help="undo the whole demo ('iterate --oracle --rounds N') as one")
    parser.set_defaults(run=run_undo)

    parser = subparsers.add_parser("redo", help="re-apply the last undone event")
    _actor(parser)
    _any_author(parser, "redo")
    parser.set_defaults(run=run_redo)

    parser = subparsers.add_parser("vocab", help="list, add, remove, rename or merge labels of the vocabulary")
    add_common(parser)
    parser.add_argument("--author", default="cli", help="who makes the change (kept in the log)")
    parser.add_argument("--add", help="new label names, comma-separated")
    parser.add_argument("--defaults", action="store_true", help="add the default vocabulary for decomposition photos")
    parser.add_argument("--ordered", action="store_true", help="the --add names are stages in this order, first to last")
    parser.add_argument("--unordered", action="store_true", help="drop the stage order")
    parser.add_argument("--remove", metavar="A,B", help="labels no image has to remove (a class the collection does not hold)")
    parser.add_argument("--rename", metavar="OLD", help="rename label OLD (with --to NEW)")
    parser.add_argument("--to", metavar="NEW", help="the new name for --rename")
    parser.add_argument("--merge", metavar="A,B", help="labels to merge (with --into T)")
    parser.add_argument("--into", metavar="T", help="the label --merge merges into")
    parser.set_defaults(run=run_vocab)

    parser = subparsers.add_parser("pseudo", help="list, accept or reject pending pseudo-labels")
    _actor(parser)
    parser.add_argument("action", choices=["list", "accept", "reject"])
    parser.add_argument("--images", help="image ids, comma-separated (default: all pending)")
    parser.add_argument("--class", dest="label", help="only pseudo-labels of this class")
    parser.set_defaults(run=run_pseudo)

    parser = subparsers.add_parser("labels", help="current labels, the event log, and a clustering's progress")
    add_common(parser)
    parser.add_argument("--events", type=int, default=10, help="how many recent events to show (default 10)")
    parser.add_argument("--clustering", type=int, help="also show each cluster's state in this clustering")
    parser.set_defaults(run=run_labels)

    parser = subparsers.add_parser("session", help="start or end a labeling session, or show its rates")
    add_common(parser)
    parser.add_argument("action", choices=["start", "end", "stats"])
    parser.add_argument("--id", type=int, help="the session (for end and stats)")
    parser.add_argument("--author", default="cli", help="who labels in this session")
    parser.set_defaults(run=run_session)

    parser = subparsers.add_parser("export", help="export the labels as CSV, JSON or an ImageFolder tree")
    add_common(parser)
    parser.add_argument("--format", required=True, choices=["csv", "json", "imagefolder"])
    parser.add_argument("--out", required=True, help="the file (csv, json) or new folder (imagefolder) to write")
    parser.add_argument("--include-pending", action="store_true", help="also export pending pseudo-labels")
    parser.add_argument("--link", choices=["copy", "hardlink", "symlink"], default="copy", help="how an ImageFolder holds images")
    parser.set_defaults(run=run_export)


def _actor(parser) -> None:
    add_common(parser)
    parser.add_argument("--author", default="cli", help="who acts (kept in the log)")
    parser.add_argument("--session", type=int, help="the labeling session this counts toward")


def _cluster(parser) -> None:
    parser.add_argument("--clustering", type=int, required=True, help="the clustering id")
    parser.add_argument("--cluster", type=int, required=True, help="the cluster number in it")


def _split(text: str | None) -> list[str]:
    """``"3, 17,22"`` -> ``["3", "17", "22"]`` (ids and label names given comma-separated)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _event_result(workspace: Workspace, events: list[labels.LabelEvent], text: str) -> Result:
    total = labels.interaction_count(workspace)
    data = {"ok": True, "events": [e.to_dict() for e in events], "interactions": total}
    return Result(data, f"{text}\ninteractions so far: {total}")


def run_label(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        event = labels.label_cluster(
            workspace, args.clustering, args.cluster, args.label, _split(args.exclude), author=args.author,
            cluster_confidence=args.confidence, a=args.a, iteration=args.iteration, session_id=args.session,
            include=_split(args.include),
        )
        excluded, before = len(event.details["excluded"]), len(event.details["rejected_before"])
        text = (
            f"event {event.id}: labeled {event.changed} image(s) of cluster {args.cluster} (clustering "
            f"{args.clustering}) as '{event.label}'; {excluded} excluded"
            + (f", {before} of them because you took '{event.label}' from them before (--include to label them)" if before else "")
        )
        return _event_result(workspace, [event], text)


def run_label_images(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        event = labels.label_images(
            workspace, _split(args.images), args.label, author=args.author, iteration=args.iteration, session_id=args.session
        )
        return _event_result(workspace, [event], f"event {event.id}: labeled {event.changed} image(s) as '{event.label}'")


def run_unlabel(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        event = labels.unlabel_images(workspace, _split(args.images), author=args.author, session_id=args.session)
        return _event_result(workspace, [event], f"event {event.id}: {event.changed} image(s) back in the unlabeled pool")


def _any_author(parser, verb: str) -> None:
    parser.add_argument(
        "--any-author", action="store_true",
        help=f"{verb} the latest event of anyone, not only --author's own (recorded in the log)",
    )


def run_skip(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        event = labels.skip_cluster(workspace, args.clustering, args.cluster, author=args.author, session_id=args.session, reason=args.reason)
        return _event_result(workspace, [event], f"event {event.id}: skipped cluster {args.cluster} (clustering {args.clustering})")


def _describe(event: labels.LabelEvent) -> str:
    kept = len(event.details.get("kept", ()))
    changed_later = f" ({kept} image(s) changed since kept their label)" if kept else ""
    return f"event {event.id}: {event.action} of event {event.reverses}, {event.changed} image(s) restored{changed_later}"


def run_undo(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        if args.demo:
            events = undo_demo(workspace, author=args.author)
            return _event_result(workspace, events, f"undid the demo: {len(events)} events")
        events = labels.undo(workspace, args.n, author=args.author, session_id=args.session, any_author=args.any_author)
        return _event_result(workspace, events, "\n".join(_describe(e) for e in events))


def run_redo(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        event = labels.redo(workspace, author=args.author, session_id=args.session, any_author=args.any_author)
        text = f"event {event.id}: redid event {event.details['redo_of']} ({event.action}), {event.changed} image(s)"
        return _event_result(workspace, [event], text)


def run_vocab(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        events = []
        if args.defaults:
            events.append(labels.add_default_vocabulary(workspace, args.author))
        if args.add:
            events.append(labels.add_labels(workspace, _split(args.add), args.author, ordered=args.ordered))
        elif args.ordered:
            raise PipelineError("--ordered needs --add with the stages in order, e.g. --add U,R,V,O --ordered")
        if args.unordered:
            events.append(labels.declare_unordered(workspace, args.author))
        if args.remove:
            events.append(labels.remove_labels(workspace, _split(args.remove), args.author))
        if args.rename or args.to:
            if not (args.rename and args.to):
                raise PipelineError("--rename OLD needs --to NEW")
            events.append(labels.rename_label(workspace, args.rename, args.to, args.author))
        if args.merge or args.into:
            if not (args.merge and args.into):
                raise PipelineError("--merge A,B needs --into T")
            events.append(labels.merge_labels(workspace, _split(args.merge), args.into, args.author))
        names = labels.vocabulary(workspace)
        events = [e for e in events if e is not None]
        text = "\n".join(f"event {e.id}: {e.action} ({e.changed} image label(s) changed)" for e in events)
        result = _event_result(workspace, events, (text + "\n" if text else "") + "vocabulary: " + (", ".join(names) or "(empty)"))
        result.data["vocabulary"] = names
        result.data["order"] = labels.vocabulary_order(workspace)
        if result.data["order"]:
            result.text += "\norder: " + " < ".join(result.data["order"])
        return result


def run_pseudo(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        ids = _split(args.images) or None
        if args.action == "list":
            frame = labels.current_labels(workspace)
            pending = frame[frame["status"] == "pending"]
            if args.label:
                pending = pending[pending["label"] == args.label]
            rows = pending.drop(columns=["status"]).to_dict("records")
            counts = pending["label"].value_counts().sort_index().to_dict()
            text = f"{len(rows)} pending pseudo-label(s)" + "".join(f"\n  {k}: {v}" for k, v in counts.items())
            return Result({"ok": True, "pending": rows, "counts": counts}, text)
        review = labels.accept_pseudo if args.action == "accept" else labels.reject_pseudo
        event = review(workspace, ids, args.label, author=args.author, session_id=args.session)
        return _event_result(workspace, [event], f"event {event.id}: {args.action}ed {event.changed} pseudo-label(s)")


def run_labels(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        frame = labels.current_labels(workspace)
        log = labels.events(workspace, args.events)
        counts = frame.groupby(["label", "status"]).size().unstack(fill_value=0) if len(frame) else None
        data = {
            "ok": True,
            "interactions": labels.interaction_count(workspace),
            "labeled": int((frame["status"] == "accepted").sum()),
            "pending": int((frame["status"] == "pending").sum()),
            "by_label": {} if counts is None else {k: {s: int(n) for s, n in v.items()} for k, v in counts.to_dict("index").items()},
            "by_source": frame["source"].value_counts().sort_index().to_dict(),
            "events": log,
        }
        lines = [
            f"{data['labeled']} image(s) labeled, {data['pending']} pending pseudo-label(s); "
            f"interactions so far: {data['interactions']}",
            "by label: " + (", ".join(f"{k}={sum(v.values())}" for k, v in data["by_label"].items()) or "none"),
            "recent events:",
        ]
        lines += [
            f"  {e['id']:>5} {e['at']} {e['author']}: {' '.join(filter(None, [e['action'], e['label']]))} "
            f"({e['images']} image(s), {e['interactions']} interaction(s)){' [undone]' if e['undone'] else ''}"
            for e in data["events"]
        ]
        if args.clustering is not None:
            require_clustering(workspace, args.clustering)
            status = labels.cluster_status(workspace, args.clustering)
            data["clusters"] = status
            lines.append(f"clustering {args.clustering}:")
            lines += [
                f"  cluster {c['cluster']}: {c['state']}, {c['labeled']}/{c['size']} labeled"
                + (f", mostly '{c['top_label']}' ({c['top_count']})" if c["top_count"] else "")
                for c in data["clusters"]
            ]
        return Result(data, "\n".join(lines))


def run_session(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        if args.action == "start":
            session_id = labels.start_session(workspace, args.author)
            return Result({"ok": True, "session": session_id}, f"labeling session {session_id} started; pass --session {session_id}")
        if args.id is None:
            raise PipelineError(f"session {args.action} needs --id (the session number)")
        stats = labels.end_session(workspace, args.id) if args.action == "end" else labels.session_stats(workspace, args.id)
        per_interaction = f"{stats.images_per_interaction:.2f}" if stats.images_per_interaction is not None else "-"
        per_minute = f"{stats.images_per_minute:.1f}" if stats.images_per_minute is not None else "-"
        text = (
            f"session {stats.id} ({stats.author}): {stats.minutes:.1f} min, {stats.interactions} interaction(s), "
            f"{stats.images_labeled} image(s) labeled; {per_interaction} per interaction, {per_minute} per minute"
        )
        return Result({"ok": True, **stats.to_dict()}, text)


def run_export(args) -> Result:

    with Workspace.open(args.workspace) as workspace:
        report = export_labels(workspace, args.format, args.out, args.include_pending, args.link, ProgressLine("export"))
    counts = ", ".join(f"{k}={v}" for k, v in report.labels.items()) or "no labels"
    return Result({"ok": True, **report.to_dict()}, f"exported {report.rows} label(s) to {report.path} ({counts})")

"""The label event log (undo, redo, replay), vocabulary, cluster and pseudo labels, review order, sessions."""

from .clusters import (
    cluster_confidences,
    cluster_members,
    cluster_status,
    label_cluster,
    skip_cluster,
)
from .log import (
    KEEPS_ORIGIN,
    LABEL_COLUMNS,
    LABELING_ACTIONS,
    current_labels,
    events,
    interaction_count,
    label_images,
    redo,
    replay_labels,
    training_labels,
    undo,
    unlabel_images,
)
from .pseudo import accept_pseudo, add_pseudo_labels, reject_pseudo
from .records import SOURCES, LabelEvent, LabelState
from .review import REVIEW_MODES, next_open_cluster, representatives, review_order
from .sessions import (
    SessionStats,
    end_session,
    open_session,
    session_stats,
    start_session,
)
from .vocabulary import (
    DEFAULT_VOCABULARY,
    MAX_LABEL_LENGTH,
    VocabularyChange,
    clean_label,
    vocabulary,
)
from .vocabulary_events import (
    add_default_vocabulary,
    add_labels,
    merge_labels,
    rename_label,
)

__all__ = [
    "cluster_members",
    "cluster_confidences",
    "label_cluster",
    "skip_cluster",
    "cluster_status",
    "LABELING_ACTIONS",
    "KEEPS_ORIGIN",
    "label_images",
    "unlabel_images",
    "undo",
    "redo",
    "LABEL_COLUMNS",
    "current_labels",
    "replay_labels",
    "training_labels",
    "interaction_count",
    "events",
    "add_pseudo_labels",
    "accept_pseudo",
    "reject_pseudo",
    "SOURCES",
    "LabelState",
    "LabelEvent",
    "REVIEW_MODES",
    "review_order",
    "next_open_cluster",
    "representatives",
    "SessionStats",
    "start_session",
    "open_session",
    "end_session",
    "session_stats",
    "DEFAULT_VOCABULARY",
    "MAX_LABEL_LENGTH",
    "VocabularyChange",
    "vocabulary",
    "clean_label",
    "add_labels",
    "add_default_vocabulary",
    "rename_label",
    "merge_labels",
]

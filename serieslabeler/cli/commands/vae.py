"""``vae-centres``: the VAE's latent cluster centres, for the expert to name (phase 1 of mode ``vae``)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from serieslabeler.cli.base import Result, add_common
from serieslabeler.errors import PipelineError
from serieslabeler.models.vae_rounds import decoded_centres, vae_centres
from serieslabeler.progress import ProgressLine
from serieslabeler.store.workspace import Workspace, write_atomic


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "vae-centres",
        help="train a VAE without labels, cluster its latents and show the decoded centres to name",
        description=(
            "Without --clustering: train a VAE on every image of --features (their vectors, or with "
            "--option input=images their pixels), store its latents as feature set model-<id> and cluster "
            "them (k from the elbow unless --k). With --clustering: show the centres of a clustering of "
            "such latents again (e.g. after 'split'). Name each cluster with 'label --confidence P', split "
            "unclear ones with 'split', then continue with 'train --mode vae'."
        ),
    )
    add_common(parser)
    parser.add_argument("--features", help="feature set (or backbone name) the VAE reads (default: the newest)")
    parser.add_argument("--clustering", type=int, help="show the centres of this clustering of VAE latents instead of training")
    parser.add_argument("--k", type=int, help="number of clusters (default: the elbow of k = 2..--k-max)")
    parser.add_argument("--k-max", type=int, default=12, help="largest k the elbow looks at (default 12)")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a VAE option, repeatable: input=features|images, backbone, weights, image_size, "
                             "latent_dim, hidden, beta, pretrain_epochs, batch_size, lr")
    parser.add_argument("--pictures", help="write each decoded centre (image VAEs) as a PNG into this folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.set_defaults(run=run_vae_centres)


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``["input=images", "latent_dim=8"]`` -> ``{"input": "images", "latent_dim": "8"}`` (typed by the mode)."""
    options = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise PipelineError(f"--option: '{pair}' is not NAME=VALUE (e.g. input=images)")
        options[name.strip()] = value.strip()
    return options


def run_vae_centres(args) -> Result:
    with Workspace.open(args.workspace) as workspace:
        data: dict = {"ok": True}
        if args.clustering is None:
            round_ = vae_centres(workspace, args.features, args.k, args.k_max, args.seed, args.device,
                                 ProgressLine("training the VAE"), **parse_options(args.option))
            data.update(round_.to_dict())
            clustering_id = round_.clustering_id
            head = (f"VAE model {round_.model_id} on {round_.feature_set} ({round_.images} images); latents "
                    f"'{round_.latents}', clustering {clustering_id} with k={round_.k}")
        else:
            clustering_id = args.clustering
            data["clustering_id"] = clustering_id
            head = f"clustering {clustering_id}"
        pictures = decoded_centres(workspace, clustering_id)
        names = workspace_names(workspace, [p.nearest_image_id for p in pictures])
    centres = []
    for name, picture in zip(names, pictures):
        entry = {"cluster": picture.cluster, "size": picture.size, "nearest_image_id": picture.nearest_image_id, "nearest_file": name}
        if args.pictures and picture.is_image:
            entry["picture"] = str(write_picture(args.pictures, clustering_id, picture))
        centres.append(entry)
    data["centres"] = centres
    lines = [head] + [
        f"  cluster {c['cluster']}: {c['size']} images, most typical image {c['nearest_image_id']} ({c['nearest_file']})"
        + (f", decoded centre {c['picture']}" if "picture" in c else "")
        for c in centres
    ]
    lines.append(f"name a cluster: serieslabeler label --workspace {args.workspace} --clustering {clustering_id} "
                 "--cluster C --as LABEL --confidence P; split one: serieslabeler split ...; "
                 "then: serieslabeler train --mode vae")
    return Result(data, "\n".join(lines))


def workspace_names(workspace: Workspace, image_ids: list[int]) -> list[str]:
    rows = {r["id"]: r["file_name"] for r in workspace.query_in("SELECT id, file_name FROM images WHERE id IN ({})", image_ids)}
    return [rows[i] for i in image_ids]


def write_picture(folder: str, clustering_id: int, picture):
    """A decoded centre as a PNG (at least 128 px wide, nearest-neighbour enlarged)."""
    pixels = (np.clip(picture.decoded, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
    image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    scale = max(1, 128 // image.width)
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path = Path(folder) / f"clustering-{clustering_id}-centre-{picture.cluster}.png"
    write_atomic(path, buffer.getvalue())
    return path

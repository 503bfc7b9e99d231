"""``perceptlab train`` and ``embed``: training encoders and storing their clip embeddings."""

from __future__ import annotations

from perceptlab.cli.common import ProgressBar, UserError, open_library, print_json


def cmd_train(args) -> int:
    from perceptlab.train.run import run_train_command

    progress = "json" if args.json else args.progress
    return run_train_command(args.config, args.set or [], resume=args.resume, library=args.library,
                             progress=progress)


def cmd_embed(args) -> int:
    from perceptlab.models.checkpoint import CheckpointError
    from perceptlab.models.embedding_metric import embed_library

    lib = open_library(args)
    with lib:
        try:
            summary = embed_library(lib, args.checkpoint, name=args.name, pool=args.pool, hop=args.hop,
                                    distance=args.distance, force=args.force, device=args.device,
                                    progress=ProgressBar("embedding"))
        except CheckpointError as exc:
            raise UserError(str(exc)) from None
    if args.json:
        print_json({"library": str(lib.path), **summary.to_json()})
    else:
        print(summary.text())
    return 0


# ---------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------


def add_parsers(sub, common) -> None:
    """Add train and embed to the ``perceptlab`` subparsers."""
    p = sub.add_parser("train", parents=[common], help="train an autoencoder (JSON lines on stdout when piped)")
    p.add_argument("--config", metavar="FILE.toml", default=None, help="training config (see training/README.md)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=1e-3 --set data.library=PATH (repeatable)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue from <out_dir>/last.pt (or the given checkpoint)")
    p.add_argument("--progress", choices=["auto", "json", "bar"], default="auto",
                   help="progress output (auto: a bar on a terminal, JSON lines otherwise)")
    p.add_argument("--json", action="store_true", help="same as --progress json")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("embed", parents=[common], help="store clip embeddings of an encoder checkpoint")
    p.add_argument("--checkpoint", required=True, metavar="FILE.pt", help="a trained checkpoint (best.pt)")
    p.add_argument("--name", default=None, help="model name; the metric is embedding:<name> (default: run name)")
    p.add_argument("--distance", choices=["cosine", "euclidean"], default="cosine",
                   help="distance of the embedding metric (default cosine)")
    p.add_argument("--pool", choices=["mean", "meanstd"], default="mean",
                   help="clip embedding: mean of patch latents, or mean and std (default mean)")
    p.add_argument("--hop", type=int, default=None, help="patch hop in frames (default: half a patch)")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    p.add_argument("--force", action="store_true", help="recompute embeddings already stored")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_embed)

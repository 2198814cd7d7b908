"""`vrp-sam app`: the browser app (`pip install -e ".[app]"`)."""

from __future__ import annotations

import argparse

from vrp_sam_jax import names
from vrp_sam_jax.cli import options

# The app's own: `vrp-sam demo` trains anew in demo_out/run each time (deleting what is
# there), so sharing it would delete the model a running app serves.
DEFAULT_TOY_WORKDIR = "app_out/toy_run"


def _model(args: argparse.Namespace):
    """(model, the `vrp-sam predict` options that load it, the page's line about it); the
    model is None for the toy model, which the page prepares in the background."""
    from vrp_sam_jax.app import toy_model
    from vrp_sam_jax.storage.paths import absolute

    def full(path: str) -> str:  # predict.sh runs in the unzipped folder, not here
        return str(absolute(path))

    model = options.load_model(args, args.compute_dtype)
    if args.source is not None:
        given = ["--vrp-checkpoint", full(args.source)]
        if args.which != "best":
            given += ["--which", str(args.which)]
        if args.sam_checkpoint:
            given += ["--sam-checkpoint", full(args.sam_checkpoint)]
    elif model is not None:
        given = ["--sam-checkpoint", full(args.sam_checkpoint),
                 "--backbone-checkpoint", full(args.backbone_checkpoint)]
    else:
        given = ["--vrp-checkpoint", full(args.toy_workdir)]
    if model is None or toy_model.is_toy(model):
        where = full(args.toy_workdir if args.source is None else args.source)
        line = (f"**This is a toy.** The model ({where}) is a tiny VRP-SAM trained on the "
                "embedded toy benchmark "
                "(coloured, textured shapes on clutter) by `vrp-sam demo`: it knows nothing "
                "of real images. Start the app with `--vrp-checkpoint` for a real model, or "
                "press *Load the toy example* to try this one.")
    else:
        c = model.config
        line = (f"**Model:** {model.origin.get('encoder', 'no VRP encoder (GP-SAM only)')}: "
                f"{c.backbone} backbone, SAM {c.sam_type}, {c.image_size} px")
    return model, given, line


def app(args: argparse.Namespace) -> int:
    import sys

    from vrp_sam_jax.errors import InputError

    try:
        from vrp_sam_jax.app import page
    except ImportError as e:
        raise InputError(f'vrp-sam app needs Gradio: pip install -e ".[app]" ({e})') from e
    from vrp_sam_jax.app import session, toy_model

    model, given, line = _model(args)
    if model is None:  # the page is served at once, the toy model made ready meanwhile
        print(f"vrp-sam app: no --vrp-checkpoint given; the toy model in {args.toy_workdir} is "
              "prepared in the background (trained first where it is not finished; the page "
              "shows how far)", file=sys.stderr)
        segmenter = toy_model.Preparation(
            toy_model.toy_config(args.toy_workdir), args.toy_workdir,
            lambda loaded: session.Segmenter(loaded, given, args.batch_size),
            progress=not args.quiet).start()
    else:
        segmenter = session.Segmenter(model, given, args.batch_size)
    blocks = page.build(segmenter, line, args.workspace)
    blocks.queue(default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port, share=False, quiet=args.quiet,
        allowed_paths=[str(blocks.workspace)], footer_links=["settings"],
        # Gradio stores every upload under its temporary folder before a handler sees it
        max_file_size=f"{args.max_upload_mb}mb")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="a browser page: annotate references, segment your images")
    options.add_model_source(p, "--vrp-checkpoint", required=False)
    p.add_argument("--backbone-checkpoint", default=None,
                   help="with --sam-checkpoint and no --vrp-checkpoint: GP-SAM only")
    p.add_argument("--toy-workdir", default=DEFAULT_TOY_WORKDIR,
                   help="without a checkpoint: the toy model's work directory (the app's own; "
                        "a finished demo_out/run of vrp-sam demo also serves; where it is not "
                        "trained, the page is served at once and the model trained there in "
                        "the background)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (0.0.0.0: reachable from other machines)")
    p.add_argument("--port", type=options.positive_int, default=7860,
                   help="port to serve on (default 7860)")
    p.add_argument("--workspace", default=None,
                   help="folder for the results (default: a new temporary folder)")
    p.add_argument("--batch-size", type=options.positive_int, default=8,
                   help="targets per device call")
    p.add_argument("--compute-dtype", choices=names.COMPUTE_DTYPES, default="float32")
    p.add_argument("--max-upload-mb", type=options.positive_int, default=64,
                   help="largest file the page accepts, in MB (default 64); larger uploads "
                        "are refused before they are stored")
    options.add_compile_cache(p)
    options.add_quiet(p)
    p.set_defaults(func=app)

"""Every model source read by one function, and a model written out again.

`load(source)` reads, and says in the returned `LoadedModel` where each part came from:
- a training work directory (`vrp-sam train --workdir`): its best checkpoint by default,
  `which="latest"` or a step number; SAM and the backbone as the run's own config names them
  (or as it trained them);
- a converted directory (`vrp-sam export`, `vrp-sam convert-vrp`), with SAM bundled or
  pointed to by path and SHA-256 (older directories hold no SAM: give `sam`);
- the release's `best_model.pt` (it holds the backbone and the encoder, not SAM: give `sam`).
`sam` (an official SAM `.pth` or a `vrp-sam convert-sam` directory) overrides the source's
own SAM; `backbone` and `sam_type`, when given, are checked against the source.

`export(model, output)` writes our self-contained directory (readable without PyTorch) or,
with `format="release"`, `best_model.pt` in the release's exact layout.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import sam_port
from sam_port.config import is_sam2_type
from vrp_sam_jax.errors import CheckpointError, InputError
from vrp_sam_jax.models import LoadedModel, VRPSamConfig, init_params
from vrp_sam_jax.names import EXPORT_FORMATS
from vrp_sam_jax.storage.paths import AnyPath, absolute, as_path
from vrp_sam_jax.training import run_dir
from vrp_sam_jax.weights import directory, release
from vrp_sam_jax.weights.backbones import load_backbone
from vrp_sam_jax.weights.release import VRPWeights


def load(source: str | Path, *, which: str | int = "best", sam: str | Path | None = None,
         sam_type: str | None = None, backbone: str | None = None,
         compute_dtype: str = "float32", attention: str = "auto") -> LoadedModel:
    """The model of `source` (a work directory, a converted directory or `best_model.pt`),
    computing in `compute_dtype` with the `attention` path (whatever trained it). A work
    directory may be a bucket URL (`gs://...`); the others are read from local paths."""
    path = absolute(source)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    is_run = run_dir.is_run_dir(path)  # one look (on a bucket, a request)
    if not isinstance(path, Path) and not is_run:
        raise CheckpointError(f"{path}: only training work directories are read from a bucket;"
                              " copy a converted directory or best_model.pt here first")
    if which != "best" and not is_run:
        raise InputError(f"{path}: choosing a checkpoint ({which!r}) applies to training "
                         "work directories only")
    if is_run:
        model = _from_run(path, which, sam, sam_type, backbone)
    elif path.is_dir():
        model = _from_directory(path, sam, sam_type, backbone)
    else:
        _require_sam(sam, path)  # before reading the file
        model = _with_sam(release.read_release(path, backbone), 512, sam, None, sam_type, path,
                          {"kind": "release", "path": str(path)})
    model_config = dataclasses.replace(model.config, compute_dtype=compute_dtype,
                                       attention=attention)
    return dataclasses.replace(model, config=model_config)


FROZEN_FILES_NEEDED = ("GP-SAM without a VRP checkpoint needs a SAM checkpoint "
                       "(--sam-checkpoint, or init.sam_checkpoint) and backbone weights "
                       "(--backbone-checkpoint, or init.backbone_checkpoint)")


def load_frozen(sam: str | Path | None, backbone: str | Path | None, *, image_size: int = 512,
                backbone_name: str | None = None, sam_type: str | None = None,
                compute_dtype: str = "float32", attention: str = "auto") -> LoadedModel:
    """A backbone and SAM without a trained VRP encoder (GP-SAM needs none): SAM from `sam`
    (an official `.pth` or converted directory), the backbone from `backbone` (any file or
    directory `vrp-sam convert-backbone` reads; `backbone_name` is checked against it)."""
    if sam is None or backbone is None:
        raise CheckpointError(FROZEN_FILES_NEEDED)
    name, backbone_params = load_backbone(backbone, backbone_name)
    loaded = sam_port.load_sam(sam, sam_type)
    model_config = VRPSamConfig(backbone=name, sam_type=loaded.model_type, image_size=image_size,
                          compute_dtype=compute_dtype, attention=attention)
    return LoadedModel(model_config, {"backbone": backbone_params, "sam": loaded.params},
                       {"backbone": str(Path(backbone).absolute()),
                        "sam": str(Path(sam).absolute())}, {"kind": "frozen"},
                       str(Path(sam).absolute()) if Path(sam).is_file() else None)


def random_model(model_config: VRPSamConfig, seed: int) -> LoadedModel:
    """Random weights of `config` (tests, the toy benchmark)."""
    origin = f"random (seed {seed})"
    return LoadedModel(model_config, init_params(model_config, seed),
                       dict.fromkeys(("backbone", "encoder", "sam"), origin), {"kind": "random"})


def needs_sam(source: str | Path) -> bool:
    """Whether `load(source)` needs `sam`: the release's file, a converted directory without
    SAM (or whose SAM file is not there), a work directory whose SAM file is not there."""
    path = as_path(source)
    if run_dir.is_run_dir(path):
        config = run_dir.read_config(path)
        return not config.init.random and not (config.init.sam_checkpoint
                                               and Path(config.init.sam_checkpoint).exists())
    if path.is_dir():
        sam = directory.read_meta(path)["sam"]
        return sam is None or ("file" in sam and not Path(str(sam["file"])).is_file())
    return True


def _check(found: str, asked: str | None, what: str, path: Path) -> None:
    if asked is not None and asked != found:
        raise CheckpointError(f"{path}: holds a {found} {what}, but {asked} was asked for")


def _from_run(path: AnyPath, which: str | int, sam: str | Path | None, sam_type: str | None,
              backbone: str | None) -> LoadedModel:
    config = run_dir.read_config(path)
    _check(config.model.backbone, backbone, "backbone", path)
    _check(config.model.sam_type, sam_type, "SAM", path)
    return run_dir.restore(path, which, sam)[1]


def _from_directory(path: Path, sam: str | Path | None, sam_type: str | None,
                    backbone: str | None) -> LoadedModel:
    converted = directory.read_directory(path, backbone)
    info = {"kind": "converted", "path": str(path.absolute()),
            "exported_from": converted.origin}
    if sam is not None:  # the user's SAM, of whatever type they ask
        return _with_sam(converted.weights, converted.image_size, sam, None, sam_type, path,
                         info)
    return _with_sam(converted.weights, converted.image_size,
                     directory.sam_location(path, converted),
                     (converted.sam or {}).get("model_type"), sam_type, path, info)


def _require_sam(sam: str | Path | None, path: Path) -> None:
    if sam is None:
        raise CheckpointError(f"{path}: holds no SAM (the release's checkpoint never does); "
                              "give the SAM checkpoint (--sam-checkpoint, or "
                              "--config.init.sam_checkpoint for evaluate)")


def _with_sam(weights: VRPWeights, image_size: int, sam: str | Path | None,
              recorded_type: str | None, sam_type: str | None, path: Path,
              info: dict) -> LoadedModel:
    """VRP weights + the SAM at `sam`, checked against each other."""
    _require_sam(sam, path)
    loaded = sam_port.load_sam(sam, sam_type or recorded_type)
    if loaded.config.prompt_embed_dim != weights.hidden_dim:
        raise CheckpointError(
            f"{path}: VRP prompts are {weights.hidden_dim}-d but the SAM in {sam} "
            f"({loaded.model_type}) takes {loaded.config.prompt_embed_dim}-d prompts")
    model_config = VRPSamConfig(backbone=weights.backbone, sam_type=loaded.model_type,
                          image_size=image_size, num_queries=weights.num_queries,
                          num_heads=weights.num_heads, query_init=weights.query_init)
    where, sam_path = str(path.absolute()), str(Path(sam).absolute())
    return LoadedModel(model_config, {**weights.params, "sam": loaded.params},
                       {"backbone": where, "encoder": where, "sam": sam_path}, info,
                       sam_path if Path(sam).is_file() else None)


def release_weights(source: str | Path, *, which: str | int = "best",
                    sam: str | Path | None = None, sam_type: str | None = None,
                    backbone: str | None = None) -> VRPWeights:
    """What the release's `best_model.pt` holds (the backbone and the VRP encoder) of
    `source`. A converted directory or a `best_model.pt` gives it without reading any SAM
    (the release's file never holds SAM); a work directory is loaded whole (its SAM is part
    of how it restores), and one whose SAM was trained is refused."""
    path = absolute(source)
    if (isinstance(path, Path) and path.exists() and not run_dir.is_run_dir(path)
            and sam is None and which == "best"):
        if not path.is_dir():
            return release.read_release(path, backbone)
        converted = directory.read_directory(path, backbone)
        _refuse_sam2((converted.sam or {}).get("model_type") or "", path)
        return converted.weights
    model = load(source, which=which, sam=sam, sam_type=sam_type, backbone=backbone)
    _refuse_trained_sam(model)
    _refuse_sam2(model.config.sam_type, source)
    return vrp_weights(model)


def _refuse_sam2(sam_type: str, source: str | Path) -> None:
    """The release's best_model.pt drives SAM (its encoder's prompts were made for SAM's
    decoder); a model made for SAM 2's cannot go there unnoticed."""
    if is_sam2_type(sam_type):
        raise InputError(f"{source}: the model's segmenter is SAM 2 ({sam_type}); the "
                         "release's best_model.pt drives SAM only: export with --format jax")


def export_release(weights: VRPWeights, output: str | Path) -> Path:
    """`best_model.pt` in the release's layout: `output` itself when it ends in .pt/.pth,
    else `output/best_model.pt`. Returns what was written."""
    output = Path(output)
    target = output if output.suffix in (".pt", ".pth") else output / "best_model.pt"
    if target.exists():
        raise InputError(f"{target}: already exists; choose a new output")
    target.parent.mkdir(parents=True, exist_ok=True)
    return release.write_release(weights, target)


def vrp_weights(model: LoadedModel) -> VRPWeights:
    """The backbone and VRP encoder of `model`."""
    c = model.config
    return VRPWeights(c.backbone, c.hidden_dim, c.num_queries,
                      {"backbone": model.params["backbone"], "encoder": model.params["encoder"]},
                      c.num_heads, c.query_init)


def _trained_sam(model: LoadedModel) -> list[str]:
    return [p for p in model.info.get("trained", ()) if p == "sam" or p.startswith("sam/")]


def _refuse_trained_sam(model: LoadedModel) -> None:
    """The release's best_model.pt holds no SAM: a model whose SAM was trained cannot go
    there."""
    if _trained_sam(model):
        raise InputError(f"the model's SAM was trained ({', '.join(_trained_sam(model))}); the "
                         "release's best_model.pt cannot hold SAM: export with --format jax")


def export(model: LoadedModel, output: str | Path, *, format: str = "jax",
           keep_sam_separate: bool = False) -> Path:
    """Write `model`: format "jax", a converted directory with SAM bundled (or, with
    `keep_sam_separate`, a pointer to the official SAM file and its SHA-256); format
    "release", `best_model.pt` (`output` itself when it ends in .pt/.pth, else
    `output/best_model.pt`). Returns what was written."""
    if format not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {format!r}; choose from "
                         f"{', '.join(EXPORT_FORMATS)}")
    output = Path(output)
    weights = vrp_weights(model)
    if format == "release":
        _refuse_trained_sam(model)
        _refuse_sam2(model.config.sam_type, model.origin.get("encoder", "the model"))
        return export_release(weights, output)
    if keep_sam_separate:
        if model.sam_file is None:
            raise InputError("its SAM is not an unchanged official SAM file (trained, random "
                             "or read from a directory), so it cannot be kept separate: "
                             "export without --keep-sam-separate to bundle it")
        return directory.write_directory(output, weights, model.config.image_size,
                                         model.origin, sam_file=model.sam_file,
                                         sam_type=model.config.sam_type)
    loaded = sam_port.LoadedSam2 if model.config.sam2 else sam_port.LoadedSam
    sam = loaded(model.config.sam_type, model.config.sam, model.params["sam"])
    return directory.write_directory(output, weights, model.config.image_size, model.origin,
                                     sam=sam)

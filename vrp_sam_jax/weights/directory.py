"""Our converted VRP-SAM directory (`vrp-sam export`, `vrp-sam convert-vrp`), read without
PyTorch:

    DIR/vrp.json     format, architecture, where SAM is, where each part came from
    DIR/params/      orbax: {"backbone", "encoder"}
    DIR/sam/         SAM, bundled (a `vrp-sam convert-sam` directory), or else
                     vrp.json points to the official SAM file by path and SHA-256

A directory without SAM (format 1, or `convert-vrp` of the release's file) needs SAM from the
user. Written into `DIR.partial` first and renamed at the end, so a killed export leaves no
half directory behind.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import sam_port
from sam_port.params_dir import restore_params_dir, save_params_dir
from vrp_sam_jax.errors import CheckpointError
from vrp_sam_jax.models.backbones import BACKBONES
from vrp_sam_jax.models.vrp_sam import architecture_problem
from vrp_sam_jax.names import QUERY_INITS
from vrp_sam_jax.storage.files import parse_json, replacing, sha256
from vrp_sam_jax.weights.backbones import abstract_backbone, check_backbone
from vrp_sam_jax.weights.release import VRPWeights, abstract_encoder

FORMAT = "vrp_sam_jax.vrp/2"
FORMATS = ("vrp_sam_jax.vrp/1", FORMAT)  # 1: backbone + encoder only (no SAM, 512 px)
META = "vrp.json"
SAM_DIR = "sam"


@dataclasses.dataclass
class ConvertedVRP:
    """What a converted directory holds: the VRP weights, the model grid, and SAM's place."""

    weights: VRPWeights
    image_size: int
    sam: dict | None  # {"bundled": "sam", "model_type"} | {"file", "sha256", "model_type"}
    origin: dict


def read_directory(directory: str | Path, backbone: str | None = None) -> ConvertedVRP:
    """A directory written by `write_directory` (or by `convert-vrp` before SAM was kept)."""
    directory = Path(directory)
    meta = read_meta(directory)
    name, hidden, queries = meta["backbone"], meta["hidden_dim"], meta["num_queries"]
    heads, size = meta["num_heads"], meta["image_size"]
    check_backbone(name, backbone, directory)
    abstract = {"backbone": abstract_backbone(name),
                "encoder": abstract_encoder(name, hidden, queries, heads)}
    params = restore_params_dir(directory.absolute(), abstract, "VRP-SAM")
    return ConvertedVRP(VRPWeights(name, hidden, queries, params, heads, meta["query_init"]),
                        size, meta["sam"], meta["origin"])


def read_meta(directory: str | Path) -> dict:
    """`vrp.json` of a converted directory, checked, with the defaults of format 1 filled."""
    meta_path = Path(directory) / META
    if not meta_path.is_file():
        raise CheckpointError(f"{directory}: not a converted VRP-SAM directory (no {META})")
    meta = parse_json(meta_path.read_bytes(), str(meta_path), "VRP-SAM metadata",
                      CheckpointError)
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{meta_path}: unknown format {found!r} (expected one of "
                              f"{', '.join(FORMATS)})")
    try:
        out = {"backbone": meta["backbone"], "hidden_dim": int(meta["hidden_dim"]),
               "num_queries": int(meta["num_queries"]),
               "num_heads": int(meta.get("num_heads", 4)),
               "query_init": meta.get("query_init", "random"),
               "image_size": int(meta.get("image_size", 512)), "sam": meta.get("sam"),
               "origin": dict(meta.get("origin", {}))}
        if out["backbone"] not in BACKBONES:
            raise ValueError(f"unknown backbone {out['backbone']!r}")
        if out["query_init"] not in QUERY_INITS:
            raise ValueError(f"unknown query_init {out['query_init']!r}")
        problem = architecture_problem(out["hidden_dim"], out["num_queries"],
                                       out["num_heads"], out["image_size"])
        if problem:
            raise ValueError(problem)
        if out["sam"] is not None and not isinstance(out["sam"], dict):
            raise ValueError("'sam' must be an object")
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{meta_path}: unreadable VRP-SAM metadata ({e})") from e
    return out


def sam_location(directory: str | Path, converted: ConvertedVRP) -> Path | None:
    """Where the directory's SAM is (its bundled copy, or the official file it points to,
    checked against the recorded SHA-256); None when it holds no SAM."""
    directory, sam = Path(directory), converted.sam
    if sam is None:
        return None
    if "bundled" in sam:
        return directory / str(sam["bundled"])
    path = Path(str(sam.get("file", "")))
    if not path.is_file():
        raise CheckpointError(f"{directory / META}: its SAM is the file {path}, which is not "
                              "there; give the SAM checkpoint explicitly (--sam-checkpoint)")
    if sha256(path) != sam.get("sha256"):
        raise CheckpointError(f"{path}: SHA-256 differs from the one {directory / META} "
                              "recorded; this is not the SAM the model was exported with")
    return path


def write_directory(directory: str | Path, weights: VRPWeights, image_size: int,
                    origin: dict, sam: sam_port.LoadedSam | None = None,
                    sam_file: str | Path | None = None, sam_type: str | None = None) -> Path:
    """Write the directory: `sam` bundles SAM's weights, `sam_file` points to the official
    file instead (by absolute path and SHA-256), neither leaves SAM to the user."""
    directory = Path(directory).absolute()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise CheckpointError(f"{directory}: already exists; choose a new output directory")
    meta = {"format": FORMAT, "backbone": weights.backbone, "hidden_dim": weights.hidden_dim,
            "num_queries": weights.num_queries, "num_heads": weights.num_heads,
            "query_init": weights.query_init, "image_size": image_size, "sam": None,
            "origin": origin}
    if sam_file is not None and sam is None:
        path = Path(sam_file).absolute()
        meta["sam"] = {"file": str(path), "sha256": sha256(path), "model_type": sam_type}
    directory.parent.mkdir(parents=True, exist_ok=True)
    with replacing(directory, directory=True) as partial:  # a name no one else owns
        if sam is not None:
            sam_port.save_sam(sam, partial / SAM_DIR)
            meta["sam"] = {"bundled": SAM_DIR, "model_type": sam.model_type}
        save_params_dir(partial, weights.params, META, meta)
    return directory

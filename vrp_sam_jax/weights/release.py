"""The VRP-SAM release's checkpoint, `best_model.pt`, read and written (docs/COMPUTATION.md
§7; the release's `common/logger.py` saves `model.state_dict()` of the DistributedDataParallel-
wrapped `model/VRP_encoder.py`): every key starts with `module.`, the backbone is included
(`module.layer0.*` .. `module.layer4.*`) and the trained encoder is
`module.downsample_query.*`, `module.merge_1.*`, `module.transformer_decoder.*`. SAM's weights
are not in it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from sam_port.convert import params_to_state_dict, state_dict_to_params, torch_key
from sam_port.params_dir import check_finite
from sam_port.torch_pickle import load_state_dict
from sam_port.torch_save import save_state_dict
from vrp_sam_jax.errors import CheckpointError
from vrp_sam_jax.models.backbones import get_backbone_spec
from vrp_sam_jax.models.dinov2 import DinoSpec
from vrp_sam_jax.models.vrp_encoder import VRPEncoder
from vrp_sam_jax.weights.backbones import (
    IGNORED,
    abstract_backbone,
    backbone_init_order,
    check_backbone,
    infer_backbone,
    init_order,
    is_release_backbone_key,
    strip_prefix,
)

PREFIX = "module."
_ENCODER_KEY = "downsample_query.0.weight"
_QUERY_KEY = "transformer_decoder.supp_q_feat.weight"
# PyTorch's order of a module's own entries in a state dict
_ENTRY_ORDER = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclasses.dataclass
class VRPWeights:
    """The backbone and VRP encoder of a VRP-SAM model (SAM's weights are separate)."""

    backbone: str
    hidden_dim: int
    num_queries: int
    params: dict  # {"backbone": ..., "encoder": ...}
    num_heads: int = 4
    query_init: str = "random"  # the release's (its file cannot say otherwise)


def encoder_init_order(backbone: str, hidden_dim: int = 256, num_queries: int = 50,
                       num_heads: int = 4) -> tuple[dict, list[tuple[str, ...]]]:
    f = jnp.zeros((1, 8, 8, get_backbone_spec(backbone).feature_dim))
    m = jnp.zeros((1, 8, 8, 1))
    return init_order(VRPEncoder(hidden_dim, num_queries, num_heads), f, m, f, m)


def abstract_encoder(backbone: str, hidden_dim: int = 256, num_queries: int = 50,
                     num_heads: int = 4) -> dict:
    return encoder_init_order(backbone, hidden_dim, num_queries, num_heads)[0]


def convert_release(state_dict: dict, backbone: str | None, source: str | Path) -> VRPWeights:
    """The release's `best_model.pt` state dict -> VRPWeights (backbone + encoder)."""
    sd = strip_prefix(state_dict, PREFIX)
    if _ENCODER_KEY not in sd:
        kind = ("a SAM checkpoint" if any(k.startswith("image_encoder.") for k in sd)
                else "a backbone file (use convert-backbone)" if "layer0.0.weight" not in sd
                and ("conv1.weight" in sd or "features.0.weight" in sd) else "not VRP-SAM")
        raise CheckpointError(f"{source}: not a VRP-SAM checkpoint (no 'module.{_ENCODER_KEY}'"
                              f"); it looks like {kind}")
    name = check_backbone(infer_backbone(sd, source), backbone, source)
    hidden_dim = sd[_ENCODER_KEY].shape[0]
    num_queries = sd[_QUERY_KEY].shape[0] if _QUERY_KEY in sd else 50
    backbone_sd = {k: v for k, v in sd.items() if is_release_backbone_key(k)}
    encoder_sd = {k: v for k, v in sd.items() if not is_release_backbone_key(k)}
    params = {
        "backbone": state_dict_to_params(backbone_sd, abstract_backbone(name), source=source,
                                         ignore=IGNORED),
        "encoder": state_dict_to_params(encoder_sd, abstract_encoder(name, hidden_dim,
                                                                     num_queries),
                                        source=source, ignore=IGNORED),
    }
    return VRPWeights(name, int(hidden_dim), int(num_queries), params)


def read_release(path: str | Path, backbone: str | None = None) -> VRPWeights:
    """The release's `best_model.pt`; `backbone` is checked against the file when given."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    weights = convert_release(load_state_dict(path), backbone, path)
    check_finite(weights.params, str(path))
    return weights


def _entry_rank(entry: tuple[tuple[str, ...], str]) -> int:
    name = entry[1].rsplit(".", 1)[-1]
    return _ENTRY_ORDER.index(name) if name in _ENTRY_ORDER else -1  # in_proj_* come first


def _torch_order(paths: list[tuple[str, ...]]) -> list[tuple[tuple[str, ...] | None, str]]:
    """(Flax path, PyTorch key) of every leaf in the order PyTorch's `state_dict()` lists
    them: modules in registration (= creation) order, each module's entries as in
    `_ENTRY_ORDER`, with BatchNorm's `num_batches_tracked` after its running variance (path
    None)."""
    modules: dict[tuple[str, ...], list] = {}
    for path in paths:
        modules.setdefault(path[:-1], []).append(path)
    out = []
    for group in modules.values():
        entries = sorted(((p, torch_key(p)) for p in group), key=_entry_rank)
        out.extend(entries)
        if entries[-1][1].endswith(".running_var"):
            out.append((None, entries[-1][1][: -len("running_var")] + "num_batches_tracked"))
    return out


def release_state_dict(weights: VRPWeights) -> dict[str, np.ndarray]:
    """The state dict of `best_model.pt` for `weights`: `module.` keys in PyTorch's order,
    layouts transposed back, BatchNorm step counters (`num_batches_tracked`) written as 0 (we
    do not keep them: they play no part in inference)."""
    if isinstance(get_backbone_spec(weights.backbone), DinoSpec):
        raise CheckpointError(f"the release's best_model.pt has no layout for a "
                              f"{weights.backbone} backbone; export in the jax format instead")
    if weights.query_init != "random":
        raise CheckpointError(f"the release's best_model.pt cannot record query_init="
                              f"{weights.query_init!r} (its model has random queries only); "
                              "export in the jax format instead")
    out = {}
    for part, (_, order) in (("backbone", backbone_init_order(weights.backbone)),
                             ("encoder", encoder_init_order(weights.backbone, weights.hidden_dim,
                                                            weights.num_queries,
                                                            weights.num_heads))):
        values = params_to_state_dict(weights.params[part])
        for path, key in _torch_order(order):
            if path is None:
                out[PREFIX + key] = np.zeros((), np.int64)
            elif key not in values:
                raise CheckpointError(f"the {part} parameters lack {key}")
            else:
                out[PREFIX + key] = np.asarray(values[key], np.float32)
    return out


def write_release(weights: VRPWeights, path: str | Path) -> Path:
    """Write `best_model.pt` in the release's layout (loadable by the release's
    `VRP_encoder` wrapped in DistributedDataParallel, `load_state_dict(strict=True)`)."""
    return save_state_dict(release_state_dict(weights), path)

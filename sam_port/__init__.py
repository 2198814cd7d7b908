"""A faithful Flax port of Segment Anything (Kirillov et al., 2023)."""

from sam_port.checkpoint import LoadedSam, load_sam, save_sam
from sam_port.config import SAM_CONFIGS, SamConfig, get_config
from sam_port.modeling import Sam
from sam_port.modeling.sam import init_params
from sam_port.predictor import SamPredictor
from sam_port.torch_pickle import CheckpointError

__all__ = [
    "SAM_CONFIGS",
    "CheckpointError",
    "LoadedSam",
    "Sam",
    "SamConfig",
    "SamPredictor",
    "get_config",
    "init_params",
    "load_sam",
    "save_sam",
]

"""FIGARO seq2seq model in plain PyTorch: config, model, inputs, checkpoints, incremental decoding."""

from e2m_live.figaro.checkpoint import (
    CheckpointError,
    load_figaro_checkpoint,
    load_pretrained,
    save_pretrained,
)
from e2m_live.figaro.config import FigaroConfig
from e2m_live.figaro.decode import IncrementalDecoder
from e2m_live.figaro.inputs import description_model_inputs, make_training_example, remi_model_inputs
from e2m_live.figaro.model import FigaroModel

__all__ = [
    "CheckpointError",
    "FigaroConfig",
    "FigaroModel",
    "IncrementalDecoder",
    "description_model_inputs",
    "load_figaro_checkpoint",
    "load_pretrained",
    "make_training_example",
    "remi_model_inputs",
    "save_pretrained",
]

"""Optional int8 weights for CPU decoding (dynamic quantization of every ``nn.Linear``).

A decode step at the official size reads ~90 MB of float32 weights per token and is bound by
memory bandwidth; int8 weights read a quarter of that. Activations stay float, so logits move
by a little (sampling is unaffected in practice; greedy output can differ from float32).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from e2m_live.figaro.model import FigaroModel


def quantize_int8(model: FigaroModel) -> FigaroModel:
    """A copy of ``model`` with int8 dynamically quantized linear layers (CPU only)."""
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("int8 dynamic quantization runs on the CPU only; move the model to 'cpu' first")
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as err:  # removed from a future torch
        raise RuntimeError("this torch build has no torch.ao.quantization.quantize_dynamic") from err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        quantized = quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)
    return quantized

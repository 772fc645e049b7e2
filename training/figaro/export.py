"""Export trained FIGARO weights as fp16 safetensors plus ``config.json``.

One ``model.safetensors`` (the layout ``e2m_live.figaro.checkpoint.load_pretrained`` reads) when
the weights fit in ``max_shard_bytes`` (16 MiB by default); otherwise shards
``model-00001-of-0000N.safetensors`` and a ``model.safetensors.index.json`` mapping each tensor to its
file (the Hugging Face layout), which :func:`load_exported` reads back.

Uses the ``safetensors`` package when it is installed and otherwise writes the (simple, documented)
safetensors format itself, so an export never fails on a bare GPU machine.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from e2m_live.figaro.config import FigaroConfig

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
TRAINING_NAME = "training.json"
MAX_SHARD_BYTES = 16 * 1024 * 1024
_DTYPE_NAMES = {torch.float16: "F16", torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64"}


def _write_safetensors(tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    try:
        from safetensors.torch import save_file
    except ImportError:
        _write_safetensors_plain(tensors, path, metadata)
        return
    save_file(dict(tensors), str(path), metadata=metadata)


def _write_safetensors_plain(
    tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str]
) -> None:
    """The safetensors format: u64 header size, JSON header (dtype, shape, byte offsets), raw bytes."""
    header: dict[str, Any] = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        data = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {
            "dtype": _DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keep tensor data 8-byte aligned
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for blob in blobs:
            fh.write(blob)


def _shards(tensors: Mapping[str, torch.Tensor], limit: int) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(tensors):
        nbytes = tensors[name].numel() * tensors[name].element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += nbytes
    return shards


def export_fp16(
    state_dict: Mapping[str, torch.Tensor],
    config: FigaroConfig,
    out_dir: str | Path,
    info: Mapping[str, Any] | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> list[Path]:
    """Write the weights in float16 (+ ``config.json`` and ``training.json``); returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("model*.safetensors"), out / INDEX_NAME]:
        stale.unlink(missing_ok=True)
    tensors = {
        k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in state_dict.items()
    }
    metadata = {"format": "pt", "model": "e2m-live-figaro", "dtype": "float16"}
    shards = _shards(tensors, max_shard_bytes)
    written: list[Path] = []
    if len(shards) == 1:
        _write_safetensors(shards[0], out / WEIGHTS_NAME, metadata)
        written.append(out / WEIGHTS_NAME)
    else:
        weight_map: dict[str, str] = {}
        for i, shard in enumerate(shards, start=1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            _write_safetensors(shard, out / name, metadata)
            weight_map.update(dict.fromkeys(shard, name))
            written.append(out / name)
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        (out / INDEX_NAME).write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n"
        )
        written.append(out / INDEX_NAME)
    config.save(out / CONFIG_NAME)
    written.append(out / CONFIG_NAME)
    if info is not None:
        (out / TRAINING_NAME).write_text(json.dumps(dict(info), indent=2, default=str) + "\n")
        written.append(out / TRAINING_NAME)
    return written


def load_exported_state(directory: str | Path) -> dict[str, torch.Tensor]:
    """The (float16) tensors of an export, single-file or sharded."""
    from safetensors.torch import load_file

    src = Path(directory)
    if (src / WEIGHTS_NAME).is_file():
        return load_file(str(src / WEIGHTS_NAME))
    index_path = src / INDEX_NAME
    if not index_path.is_file():
        raise ValueError(f"{src} holds no {WEIGHTS_NAME} and no {INDEX_NAME}")
    index = json.loads(index_path.read_text())
    state: dict[str, torch.Tensor] = {}
    for name in sorted(set(index["weight_map"].values())):
        state.update(load_file(str(src / name)))
    missing = set(index["weight_map"]) - set(state)
    if missing:
        raise ValueError(f"{src}: shards lack {sorted(missing)[:3]}")
    return state


def load_exported(directory: str | Path, device: str | torch.device = "cpu") -> Any:
    """A :class:`~e2m_live.figaro.model.FigaroModel` (float32, eval mode) from an export."""
    from e2m_live.figaro.model import FigaroModel

    config = FigaroConfig.load(Path(directory) / CONFIG_NAME)
    model = FigaroModel(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_exported_state(directory).items()}
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()

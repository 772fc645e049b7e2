"""Loading and saving FIGARO weights.

* :func:`load_figaro_checkpoint` reads an official FIGARO PyTorch-Lightning ``.ckpt``
  (``state_dict`` + ``hyper_parameters``) with ``torch.load(weights_only=True)`` and maps
  FIGARO's module names (``transformer.encoder...``, ``desc_in``, ``in_layer``, ...) onto
  :class:`FigaroModel`.
* :func:`save_pretrained` / :func:`load_pretrained`: our own format, a directory with
  ``model.safetensors`` and ``config.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from e2m_live.figaro.config import FigaroConfig
from e2m_live.figaro.model import FigaroModel

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

# Weights of FIGARO's ``transformers`` construction that its forward pass never uses.
_UNUSED = re.compile(
    r"(embeddings\.(word_embeddings|position_embeddings)\.weight|embeddings\.(position|token_type)_ids"
    r"|encoder\.pooler\.|decoder\.cls\.)"
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded (wrong flavour, vocabulary, layout or a damaged file)."""


def _attention_from_bert(sd: dict[str, Tensor], prefix: str, cross: bool) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    s = f"{prefix}.self."
    q, k, v = (sd[f"{s}{n}.weight"] for n in ("query", "key", "value"))
    qb, kb, vb = (sd[f"{s}{n}.bias"] for n in ("query", "key", "value"))
    if cross:
        out["query.weight"], out["query.bias"] = q, qb
        out["key_value.weight"] = torch.cat([k, v])
        out["key_value.bias"] = torch.cat([kb, vb])
    else:
        out["qkv.weight"] = torch.cat([q, k, v])
        out["qkv.bias"] = torch.cat([qb, kb, vb])
    if f"{s}distance_embedding.weight" in sd:
        out["distance.weight"] = sd[f"{s}distance_embedding.weight"]
    out["out.weight"] = sd[f"{prefix}.output.dense.weight"]
    out["out.bias"] = sd[f"{prefix}.output.dense.bias"]
    out["norm.weight"] = sd[f"{prefix}.output.LayerNorm.weight"]
    out["norm.bias"] = sd[f"{prefix}.output.LayerNorm.bias"]
    return out


def _bert_layer(sd: dict[str, Tensor], prefix: str, ours: str, decoder: bool) -> dict[str, Tensor]:
    self_attn = _attention_from_bert(sd, f"{prefix}.attention", False)
    out = {f"{ours}.self_attn.{k}": v for k, v in self_attn.items()}
    if decoder:
        cross = _attention_from_bert(sd, f"{prefix}.crossattention", True)
        out.update({f"{ours}.cross_attn.{k}": v for k, v in cross.items()})
    out[f"{ours}.ffn.up.weight"] = sd[f"{prefix}.intermediate.dense.weight"]
    out[f"{ours}.ffn.up.bias"] = sd[f"{prefix}.intermediate.dense.bias"]
    out[f"{ours}.ffn.down.weight"] = sd[f"{prefix}.output.dense.weight"]
    out[f"{ours}.ffn.down.bias"] = sd[f"{prefix}.output.dense.bias"]
    out[f"{ours}.ffn.norm.weight"] = sd[f"{prefix}.output.LayerNorm.weight"]
    out[f"{ours}.ffn.norm.bias"] = sd[f"{prefix}.output.LayerNorm.bias"]
    return out


def _embedding_input(sd: dict[str, Tensor], prefix: str, ours: str) -> dict[str, Tensor]:
    return {
        f"{ours}.token_type": sd[f"{prefix}.token_type_embeddings.weight"][0],
        f"{ours}.norm.weight": sd[f"{prefix}.LayerNorm.weight"],
        f"{ours}.norm.bias": sd[f"{prefix}.LayerNorm.bias"],
    }


def convert_figaro_state_dict(sd: dict[str, Tensor], config: FigaroConfig) -> dict[str, Tensor]:
    """Map a FIGARO ``Seq2SeqModule`` state dict onto :class:`FigaroModel`'s parameter names."""
    enc, dec = "transformer.encoder", "transformer.decoder.bert"
    out = {
        "desc_embedding.weight": sd["desc_in.weight"],
        "remi_embedding.weight": sd["in_layer.weight"],
        "bar_embedding.weight": sd["bar_embedding.weight"],
        "position_embedding.weight": sd["pos_embedding.weight"],
        "output.weight": sd["out_layer.weight"],
    }
    out.update(_embedding_input(sd, f"{enc}.embeddings", "encoder_input"))
    out.update(_embedding_input(sd, f"{dec}.embeddings", "decoder_input"))
    for i in range(config.encoder_layers):
        out.update(_bert_layer(sd, f"{enc}.encoder.layer.{i}", f"encoder_layers.{i}", decoder=False))
    for i in range(config.decoder_layers):
        out.update(_bert_layer(sd, f"{dec}.encoder.layer.{i}", f"decoder_layers.{i}", decoder=True))
    return out


def _count_layers(sd: dict[str, Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    found = {int(m.group(1)) for k in sd if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


_ENCODER_DISTANCE = "transformer.encoder.encoder.layer.0.attention.self.distance_embedding.weight"
_TOP_LEVEL = {f"{n}.weight" for n in ("desc_in", "in_layer", "out_layer", "bar_embedding", "pos_embedding")}
_VQ_VAE_PREFIXES = ("encoder.", "decoder.", "vq_embed", "pre_quant")


def config_from_figaro(hparams: dict, sd: dict[str, Tensor]) -> FigaroConfig:
    """Our config for a FIGARO checkpoint; sizes are read from the weights, checked against
    ``hyper_parameters``."""
    flavor = hparams.get("description_flavor", "description")
    if flavor != "description":
        raise CheckpointError(
            f"FIGARO checkpoint of description flavour {flavor!r}: only the expert-description models "
            "('description', e.g. figaro-expert) are supported, not 'latent'/'both' (figaro, figaro-learned) "
            "or 'none' (baseline)"
        )
    if _ENCODER_DISTANCE not in sd:
        raise CheckpointError("FIGARO checkpoint without relative_key_query distance tables")
    if "desc_in.weight" not in sd or "in_layer.weight" not in sd:
        raise CheckpointError("not a FIGARO seq2seq checkpoint (no desc_in/in_layer weights; a VQ-VAE?)")
    remi_vocab, d_model = sd["in_layer.weight"].shape
    desc_vocab = sd["desc_in.weight"].shape[0]
    config = FigaroConfig(
        d_model=int(d_model),
        encoder_layers=_count_layers(sd, "transformer.encoder.encoder.layer"),
        decoder_layers=_count_layers(sd, "transformer.decoder.bert.encoder.layer"),
        heads=int(hparams.get("num_attention_heads", 8)),
        ffn=int(sd["transformer.encoder.encoder.layer.0.intermediate.dense.weight"].shape[0])
        if "transformer.encoder.encoder.layer.0.intermediate.dense.weight" in sd
        else int(hparams.get("intermediate_size", 2048)),
        remi_vocab_size=int(remi_vocab),
        description_vocab_size=int(desc_vocab),
        context_size=int(hparams.get("context_size", sd["bar_embedding.weight"].shape[0] - 1)),
        max_bars=int(sd["bar_embedding.weight"].shape[0] - 1),
        max_positions=int(sd["pos_embedding.weight"].shape[0] - 1),
        max_relative_positions=(int(sd[_ENCODER_DISTANCE].shape[0]) + 1) // 2,
        relative_cross_attention=any(k.endswith("crossattention.self.distance_embedding.weight") for k in sd),
        description_options=hparams.get("description_options") or None,
    )
    for key, ours in (
        ("d_model", config.d_model),
        ("encoder_layers", config.encoder_layers),
        ("decoder_layers", config.decoder_layers),
        ("intermediate_size", config.ffn),
    ):
        if key in hparams and int(hparams[key]) != ours:
            raise CheckpointError(f"hyper_parameters say {key}={hparams[key]} but the weights have {ours}")
    return config


def load_figaro_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> tuple[FigaroModel, FigaroConfig]:
    """Load an official FIGARO Lightning checkpoint (e.g. ``figaro-expert.ckpt``).

    Both cross-attention layouts are accepted (released checkpoints have relative terms there
    too). Raises :class:`CheckpointError` for other flavours, mismatched vocabularies or
    damaged files. The model is returned in eval mode.
    """
    from e2m_live.description.vocab import DESCRIPTION_VOCAB_SIZE, REMI_VOCAB_SIZE

    try:
        ckpt = torch.load(Path(path), map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # pickle errors, zip errors, disallowed globals
        raise CheckpointError(
            f"cannot read FIGARO checkpoint {path} safely (torch.load weights_only=True): {err}. "
            "A checkpoint holding other pickled objects can be converted once, on a trusted machine, "
            "to {'state_dict': ..., 'hyper_parameters': dict(...)} (see docs/figaro.md)"
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a PyTorch Lightning checkpoint (no 'state_dict')")
    sd = {k: v for k, v in ckpt["state_dict"].items() if isinstance(v, Tensor)}
    hparams = dict(ckpt.get("hyper_parameters") or {})
    if "desc_in.weight" not in sd and any(k.startswith(_VQ_VAE_PREFIXES) for k in sd):
        raise CheckpointError(f"{path} looks like a FIGARO VQ-VAE checkpoint, not a seq2seq model")
    config = config_from_figaro(hparams, sd)
    if config.remi_vocab_size != REMI_VOCAB_SIZE or config.description_vocab_size != DESCRIPTION_VOCAB_SIZE:
        raise CheckpointError(
            f"vocabulary mismatch: checkpoint has {config.remi_vocab_size} REMI / "
            f"{config.description_vocab_size} description tokens, "
            f"ours {REMI_VOCAB_SIZE} / {DESCRIPTION_VOCAB_SIZE}"
        )
    if sd["out_layer.weight"].shape[0] != config.remi_vocab_size:
        raise CheckpointError("vocabulary mismatch between in_layer and out_layer")
    try:
        converted = convert_figaro_state_dict(sd, config)
    except KeyError as err:
        raise CheckpointError(f"FIGARO checkpoint {path} lacks weight {err}") from err
    model = FigaroModel(config)
    _load_strict(model, converted, str(path))
    leftover = sorted(k for k in sd if not _UNUSED.search(k) and not _is_mapped(k))
    if leftover:
        raise CheckpointError(f"unexpected weights in {path}: {leftover[:5]}")
    return model.eval(), config


def _is_mapped(key: str) -> bool:
    if key in _TOP_LEVEL:
        return True
    return bool(re.search(r"(\.layer\.\d+\.|embeddings\.(token_type_embeddings|LayerNorm)\.)", key))


def _load_strict(model: FigaroModel, state: dict[str, Tensor], source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source}: missing weights {missing[:5]}, unexpected weights {unexpected[:5]}")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            want = tuple(expected[name].shape)
            raise CheckpointError(f"{source}: weight {name} has shape {tuple(tensor.shape)}, expected {want}")
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})


def save_pretrained(model: FigaroModel, directory: str | Path, *, dtype: torch.dtype = torch.float32) -> Path:
    """Write ``model.safetensors`` (float32, or float16/bfloat16 to halve the size) and ``config.json``."""
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"unsupported dtype {dtype}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(out / WEIGHTS_NAME), metadata={"format": "pt", "model": "e2m-live-figaro"})
    model.config.save(out / CONFIG_NAME)
    return out


def load_pretrained(directory: str | Path, *, device: str | torch.device = "cpu") -> FigaroModel:
    """Load a model written by :func:`save_pretrained` (in eval mode, float32, on ``device``)."""
    src = Path(directory)
    if not (src / CONFIG_NAME).is_file() or not (src / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"{src} is not a saved FIGARO model (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
    config = FigaroConfig.load(src / CONFIG_NAME)
    try:
        state = load_file(str(src / WEIGHTS_NAME))
    except (SafetensorError, OSError, json.JSONDecodeError, ValueError) as err:
        raise CheckpointError(f"{src / WEIGHTS_NAME} is damaged or not a safetensors file: {err}") from err
    model = FigaroModel(config)
    _load_strict(model, state, str(src / WEIGHTS_NAME))
    return model.to(device).eval()

"""Official FIGARO Lightning checkpoints and our safetensors format."""

from __future__ import annotations

import pytest
import torch

from e2m_live.figaro.checkpoint import (
    CheckpointError,
    load_figaro_checkpoint,
    load_pretrained,
    save_pretrained,
)
from e2m_live.figaro.config import FigaroConfig
from e2m_live.figaro.model import FigaroModel

pytest.importorskip("transformers")

from tests.test_figaro_equivalence import (
    SMALL,
    FigaroReference,
    one_thread,  # noqa: F401  (autouse fixture)
    random_inputs,
    randomize,
)


def write_official_checkpoint(path, *, relative_cross_attention: bool, seed: int = 0, **overrides):
    """A ``.ckpt`` laid out like FIGARO's: Lightning's ``state_dict`` + ``hyper_parameters``,
    with the transformers construction's weights under FIGARO's module names."""
    torch.manual_seed(seed)
    ref = FigaroReference(**SMALL, relative_cross_attention=relative_cross_attention).eval()
    randomize(ref, seed)
    state = ref.state_dict()
    # older transformers versions saved this buffer; FIGARO's loader drops it, so must we
    state["transformer.encoder.embeddings.position_ids"] = torch.arange(1024)[None]
    hparams = {
        **ref.hparams,
        "lr": 1e-4,
        "lr_schedule": "const",
        "warmup_steps": 4000,
        "max_steps": None,
        "d_latent": 512,
        "n_codes": 512,
        "n_groups": 8,
        "use_pretrained_latent_embeddings": True,
    }
    hparams.update(overrides.pop("hparams", {}))
    for key, value in overrides.pop("state", {}).items():
        if value is None:
            state.pop(key)
        else:
            state[key] = value
    ckpt = {
        "epoch": 3,
        "global_step": 1000,
        "pytorch-lightning_version": "1.5.10",
        "state_dict": state,
        "hyper_parameters": hparams,
    }
    torch.save(ckpt, path)
    return ref


@pytest.mark.parametrize("relative_cross_attention", [False, True])
def test_official_checkpoint_loads_and_matches_the_reference(tmp_path, relative_cross_attention):
    path = tmp_path / "figaro-expert.ckpt"
    ref = write_official_checkpoint(path, relative_cross_attention=relative_cross_attention)
    model, config = load_figaro_checkpoint(path)
    assert not model.training
    assert config.relative_cross_attention is relative_cross_attention
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == (64, 2, 2)
    assert config.context_size == SMALL["context_size"] == config.max_bars
    z, dbar, x, bar, pos = random_inputs(1, 30, 25, config.context_size, seed=11)
    with torch.no_grad():
        torch.testing.assert_close(model(z, dbar, x, bar, pos), ref(x, z, bar, pos, dbar), atol=1e-4, rtol=0)


def test_other_flavours_are_refused(tmp_path):
    path = tmp_path / "figaro.ckpt"
    write_official_checkpoint(path, relative_cross_attention=True, hparams={"description_flavor": "both"})
    with pytest.raises(CheckpointError, match="flavour 'both'"):
        load_figaro_checkpoint(path)
    path = tmp_path / "figaro-learned.ckpt"
    write_official_checkpoint(path, relative_cross_attention=True, hparams={"description_flavor": "latent"})
    with pytest.raises(CheckpointError, match="flavour 'latent'"):
        load_figaro_checkpoint(path)


def test_vq_vae_checkpoint_is_refused(tmp_path):
    path = tmp_path / "vq-vae.ckpt"
    state = {"encoder.transformer.weight": torch.zeros(2, 2), "vq_embed.embedding": torch.zeros(3)}
    torch.save({"state_dict": state, "hyper_parameters": {"n_codes": 512}}, path)
    with pytest.raises(CheckpointError, match="VQ-VAE"):
        load_figaro_checkpoint(path)


def test_mismatched_vocabulary_is_refused(tmp_path):
    path = tmp_path / "other-vocab.ckpt"
    d = SMALL["d_model"]
    other = {"in_layer.weight": torch.zeros(1300, d), "out_layer.weight": torch.zeros(1300, d)}
    write_official_checkpoint(path, relative_cross_attention=True, state=other)
    with pytest.raises(CheckpointError, match="vocabulary mismatch"):
        load_figaro_checkpoint(path)


def test_missing_weight_and_damaged_file_are_clear_errors(tmp_path):
    path = tmp_path / "broken.ckpt"
    write_official_checkpoint(
        path,
        relative_cross_attention=False,
        state={"transformer.encoder.encoder.layer.1.output.dense.bias": None},
    )
    with pytest.raises(CheckpointError, match="lacks weight"):
        load_figaro_checkpoint(path)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read FIGARO checkpoint"):
        load_figaro_checkpoint(garbage)
    with pytest.raises(FileNotFoundError):
        load_figaro_checkpoint(tmp_path / "absent.ckpt")


def test_pickled_code_is_never_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Evil()}}, path)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_figaro_checkpoint(path)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_save_and_load_pretrained_round_trip(tmp_path, dtype):
    torch.manual_seed(0)
    config = FigaroConfig(
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        heads=4,
        ffn=48,
        context_size=24,
        max_bars=24,
        relative_cross_attention=True,
        description_options={"chords": False},
    )
    model = FigaroModel(config).eval()
    out = save_pretrained(model, tmp_path / "m", dtype=dtype)
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    loaded = load_pretrained(out)
    assert loaded.config == config
    z, dbar, x, bar, pos = random_inputs(1, 10, 12, 24, seed=1)
    with torch.no_grad():
        expected, got = model(z, dbar, x, bar, pos), loaded(z, dbar, x, bar, pos)
    if dtype == torch.float32:
        assert torch.equal(expected, got)
    else:
        torch.testing.assert_close(got, expected, atol=2e-2, rtol=0)
        assert (out / "model.safetensors").stat().st_size < 0.6 * 4 * model.num_parameters()


def test_damaged_pretrained_files_give_clear_errors(tmp_path):
    model = FigaroModel(
        FigaroConfig(
            d_model=16, encoder_layers=1, decoder_layers=1, heads=2, ffn=16, context_size=8, max_bars=8
        )
    )
    out = save_pretrained(model, tmp_path / "m")
    data = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        load_pretrained(out)
    (out / "model.safetensors").write_bytes(data)
    (out / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read FIGARO config"):
        load_pretrained(out)
    (out / "config.json").write_text(
        '{"d_model": 32, "heads": 2, "encoder_layers": 1, "decoder_layers": 1, '
        '"ffn": 16, "context_size": 8, "max_bars": 8}'
    )
    with pytest.raises(CheckpointError, match="shape"):
        load_pretrained(out)
    with pytest.raises(CheckpointError, match="not a saved FIGARO model"):
        load_pretrained(tmp_path / "nowhere")

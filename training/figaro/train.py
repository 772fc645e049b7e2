"""Train FIGARO (description -> REMI+) on the segment dataset.

    python -m training.figaro.train --config training/figaro/configs/figaro_compact_gpu.json
    torchrun --nproc_per_node 2 -m training.figaro.train --config ... --device cpu   # DDP (gloo on CPU)

FIGARO's objective: teacher-forced next-token cross-entropy over windows of ``context_size`` REMI+
tokens, the encoder seeing the description from the window's first bar on (see
``training/figaro/data.py``). AdamW with linear warm-up and cosine decay (which also follows the
``--max-minutes`` budget, so a time-boxed run still anneals), bf16 autocast on CUDA, gradient
accumulation, DistributedDataParallel under ``torchrun``, checkpoints every N steps (``last.pt``,
``best.pt`` by validation loss) and ``--resume``, validation loss and per-song perplexity, a JSON-lines
log and a PNG of the loss curves, and ``--export DIR`` (fp16 safetensors + ``config.json``).

Imports at module level only torch, numpy and the project (no pretty_midi beyond what the
vocabulary needs, no matplotlib, no tqdm): it must start on a bare GPU machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from e2m_live.figaro.config import FigaroConfig
from e2m_live.figaro.model import FigaroModel
from training.figaro.data import (
    SegmentWindows,
    TokenTables,
    Window,
    collate,
    load_pack,
    non_overlapping,
    save_pack,
)
from training.figaro.export import export_fp16

CHECKPOINT_FORMAT = "e2m-figaro-train-1"
#: Steps in a row with non-finite gradients (skipped) before a run gives up.
MAX_NONFINITE_STEPS = 20


@dataclass
class TrainConfig:
    """Everything a run needs besides the model sizes (``model``, on top of ``model_preset``)."""

    data: str = "data/dataset"  # dataset root (training.data.dataset) or a pack (.npz, training.figaro.data)
    out_dir: str = "runs/figaro-compact"
    model_preset: str = "compact"  # "compact" | "expert" | "default"
    model: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    val_split: str = "val"
    transpose: bool = True  # random key shifts (-5..+6) of training segments
    renumber_bars: bool = True  # number each segment's bars from 1, as the live decoder does
    batch_size: int = 16  # windows per micro-batch per process
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_steps: int = 20_000
    max_minutes: float | None = None
    precision: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU) | "bf16" | "fp32"
    device: str = "auto"
    seed: int = 0
    log_every: int = 10
    eval_every: int = 250
    checkpoint_every: int = 500
    val_windows_per_segment: int = 2
    val_max_windows: int = 512
    eval_batch_size: int = 32
    threads: int | None = None  # torch CPU threads per process
    compile: bool = False
    num_workers: int = 0  # DataLoader processes building batches (0: in the training loop)
    init_from: str | None = None  # exported model directory to fine-tune (its sizes replace model_preset)


# --- configuration ----------------------------------------------------------------------------


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON or TOML config file as a dict."""
    path = Path(path)
    try:
        text = path.read_text()
        if path.suffix == ".toml":
            import tomllib  # Python 3.11+; JSON configs work on older interpreters

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read config {path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"config {path} is not a table/object")
    return data


def make_train_config(data: dict[str, Any]) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown training config keys: {', '.join(unknown)}")
    cfg = TrainConfig(**data)
    for name in ("batch_size", "grad_accum", "max_steps", "log_every", "eval_every", "checkpoint_every"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < (0 if name == "max_steps" else 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {cfg.precision!r}")
    return cfg


def make_model_config(cfg: TrainConfig) -> FigaroConfig:
    if cfg.init_from:
        return FigaroConfig.load(Path(cfg.init_from) / "config.json")
    presets = {"compact": FigaroConfig.compact, "expert": FigaroConfig.expert, "default": FigaroConfig}
    if cfg.model_preset not in presets:
        raise ValueError(f"unknown model_preset {cfg.model_preset!r} (one of {sorted(presets)})")
    base = presets[cfg.model_preset]().to_dict()
    base.update(cfg.model)
    return FigaroConfig.from_dict(base)


# --- data -------------------------------------------------------------------------------------


def load_segments(data: str, split: str) -> list[Any]:
    """Non-overlapping segments of one split, from a pack (``.npz``) or the dataset directory."""
    if data.endswith(".npz"):
        return load_pack(data, split)
    from training.data.dataset import load_split  # the dataset builder's reader (numpy only)

    return non_overlapping(list(load_split(Path(data), split)))


def pack_dataset(
    data: str, out: str, splits: Sequence[str] = ("train", "val"), max_train_segments: int | None = None
) -> Path:
    """Write the non-overlapping segments of ``splits`` as one compact pack for a remote machine;
    ``max_train_segments`` keeps a seeded random subset of the training segments (a device run carries
    at most 64 MiB: about 60,000 segments)."""
    chosen = {split: load_segments(data, split) for split in splits}
    train = chosen.get("train", [])
    if max_train_segments is not None and len(train) > max_train_segments:
        keep = np.sort(np.random.default_rng(0).permutation(len(train))[:max_train_segments])
        chosen["train"] = [train[i] for i in keep]
    return save_pack(out, chosen)


def prepare_windows(
    segments: Sequence[Any], tables: TokenTables, renumber: bool = True
) -> list[SegmentWindows]:
    out = []
    for seg in segments:
        try:
            out.append(SegmentWindows(seg, tables, renumber))
        except ValueError as err:
            print(f"[train] skipping a segment: {err}", file=sys.stderr)
    return out


class WindowSampler:
    """Draws random windows; token-uniform over the data, reproducible from (seed, rank, step)."""

    def __init__(
        self,
        segments: Sequence[SegmentWindows],
        context_size: int,
        seed: int,
        rank: int,
        transpose: bool = False,
    ) -> None:
        if not segments:
            raise ValueError("no training segments")
        self.segments = segments
        self.context_size = context_size
        starts = np.array([s.n_starts(context_size) for s in segments], dtype=np.float64)
        self.probs = starts / starts.sum()
        self.seed, self.rank, self.transpose = seed, rank, transpose

    def batch(self, step: int, micro: int, size: int) -> list[Window]:
        rng = np.random.default_rng([self.seed, self.rank, step, micro])
        picks = rng.choice(len(self.segments), size=size, p=self.probs)
        out = []
        for i in picks:
            seg = self.segments[int(i)]
            if self.transpose:
                seg = seg.transposed(int(rng.integers(-5, 7)))
            start = int(rng.integers(0, seg.n_starts(self.context_size)))
            out.append(seg.window(start, self.context_size))
        return out


class StepBatches(torch.utils.data.IterableDataset):
    """The collated micro-batches of steps ``first..last-1``, in order; with DataLoader workers,
    worker ``w`` of ``n`` builds steps ``first + w, first + w + n, ...`` (the loader interleaves
    them back in order), so batches do not depend on the number of workers."""

    def __init__(
        self, sampler: WindowSampler, first: int, last: int, grad_accum: int, batch_size: int, pad_id: int
    ) -> None:
        self.sampler, self.first, self.last = sampler, first, last
        self.grad_accum, self.batch_size, self.pad_id = grad_accum, batch_size, pad_id

    def __iter__(self) -> Iterator[list[dict[str, torch.Tensor]]]:
        info = torch.utils.data.get_worker_info()
        n, w = (info.num_workers, info.id) if info else (1, 0)
        for step in range(self.first + w, self.last, n):
            yield [
                {
                    k: torch.from_numpy(v)
                    for k, v in collate(self.sampler.batch(step, micro, self.batch_size), self.pad_id).items()
                }
                for micro in range(self.grad_accum)
            ]


def step_batches(
    sampler: WindowSampler, cfg: TrainConfig, first: int, pad_id: int, pin: bool
) -> Iterator[list[dict[str, torch.Tensor]]]:
    data = StepBatches(sampler, first, cfg.max_steps, cfg.grad_accum, cfg.batch_size, pad_id)
    if cfg.num_workers <= 0:
        return iter(data)
    loader = torch.utils.data.DataLoader(
        data, batch_size=None, num_workers=cfg.num_workers, pin_memory=pin, prefetch_factor=4
    )
    return iter(loader)


def validation_windows(
    segments: Sequence[SegmentWindows], context_size: int, per_segment: int, limit: int
) -> tuple[list[tuple[int, Window]], list[str]]:
    """Deterministic validation windows tagged with a song index, and the song ids.

    Songs take turns (every song's first window, then every song's second, ...), so a ``limit``
    smaller than the split still covers as many songs as it can."""
    by_song: dict[str, list[tuple[SegmentWindows, int]]] = {}
    for seg in segments:
        by_song.setdefault(seg.song_id, []).extend(
            (seg, start) for start in seg.tiling_starts(context_size, per_segment)
        )
    songs = list(by_song)
    out: list[tuple[int, Window]] = []
    for turn in range(max((len(v) for v in by_song.values()), default=0)):
        for index, song in enumerate(songs):
            if turn < len(by_song[song]) and len(out) < limit:
                seg, start = by_song[song][turn]
                out.append((index, seg.window(start, context_size)))
    used = sorted({i for i, _ in out})
    remap = {old: new for new, old in enumerate(used)}
    return [(remap[i], w) for i, w in out], [songs[i] for i in used]


def to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in batch.items()}


# --- distributed ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_kind: str) -> Dist:
    """Join the torchrun process group if there is one (nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    backend = "nccl" if device_kind == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def all_reduce(t: torch.Tensor, ctx: Dist, op: Any = None) -> torch.Tensor:
    if ctx.world > 1:
        dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t


# --- optimisation -----------------------------------------------------------------------------


def learning_rate(cfg: TrainConfig, step: int, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` over steps or the time budget,
    whichever is further along."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    progress = step / max(1, cfg.max_steps)
    progress = min(1.0, max(progress, time_fraction))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr * warm * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    kwargs = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8, **kwargs)


def token_loss(logits: torch.Tensor, labels: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over non-pad labels, and their count."""
    loss = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=pad_id, reduction="sum"
    )
    return loss, (labels != pad_id).sum()


# --- checkpoints ------------------------------------------------------------------------------


def save_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict
) -> None:
    """Model + optimizer + counters, written atomically (read back with ``weights_only=True``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            **state,
        },
        tmp,
    )
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as err:
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a training checkpoint of this trainer")
    return ckpt


# --- evaluation -------------------------------------------------------------------------------


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    windows: Sequence[tuple[int, Window]],
    n_songs: int,
    ctx: Dist,
    device: torch.device,
    autocast: Any,
    pad_id: int,
    batch_size: int,
) -> dict[str, float]:
    """Token-weighted validation loss, its perplexity, and the mean over songs of per-song perplexity."""
    model.eval()
    nll = torch.zeros(n_songs, dtype=torch.float64, device=device)
    count = torch.zeros(n_songs, dtype=torch.float64, device=device)
    mine = windows[ctx.rank :: ctx.world]
    for i in range(0, len(mine), batch_size):
        chunk = mine[i : i + batch_size]
        batch = to_device(collate([w for _, w in chunk], pad_id), device)
        with autocast():
            logits = model(
                batch["desc_ids"],
                batch["desc_bar_ids"],
                batch["remi_ids"],
                batch["remi_bar_ids"],
                batch["remi_position_ids"],
            )
        per_token = F.cross_entropy(
            logits.float().transpose(1, 2), batch["labels"], ignore_index=pad_id, reduction="none"
        )
        mask = batch["labels"] != pad_id
        songs = torch.tensor([s for s, _ in chunk], device=device)
        nll.index_add_(0, songs, (per_token * mask).sum(1).double())
        count.index_add_(0, songs, mask.sum(1).double())
    all_reduce(nll, ctx)
    all_reduce(count, ctx)
    model.train()
    seen = count > 0
    total = float(count.sum())
    if total == 0:
        return {"val_loss": math.nan, "val_ppl": math.nan, "val_song_ppl": math.nan, "val_tokens": 0.0}
    loss = float(nll.sum()) / total
    song_ppl = torch.exp(nll[seen] / count[seen]).mean().item()
    return {"val_loss": loss, "val_ppl": math.exp(loss), "val_song_ppl": song_ppl, "val_tokens": total}


# --- the run ----------------------------------------------------------------------------------


class StopFlag:
    """Set by SIGTERM/SIGINT so a run saves a checkpoint and leaves cleanly; a context manager that
    puts the previous handlers back on exit."""

    def __init__(self) -> None:
        self.set = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        def handler(signum: int, frame: Any) -> None:
            self.set = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not in the main thread
                self._previous[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def pick_device(cfg: TrainConfig, ctx_local_rank: int) -> torch.device:
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    kind = auto if cfg.device == "auto" else cfg.device
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device cuda asked for but CUDA is not available")
        return torch.device("cuda", ctx_local_rank)
    return torch.device(kind)


def progress(iterable: range, enabled: bool, initial: int) -> Iterator[int]:
    """tqdm when installed and wanted, a plain iterator otherwise."""
    if enabled:
        try:
            from tqdm import tqdm

            yield from tqdm(iterable, initial=initial, total=iterable.stop, dynamic_ncols=True, mininterval=2)
            return
        except ImportError:
            pass
    yield from iterable


class RunLog:
    """Appends JSON lines to ``log.jsonl`` (main process only) and mirrors them on stdout."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, row: dict[str, Any], echo: bool = True) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if echo:
            shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
            print("[train]", json.dumps(shown), flush=True)


def train(
    cfg: TrainConfig, *, resume: str | None = None, export: str | None = None, progress_bar: bool = True
) -> dict[str, Any]:
    """Run training as configured; returns the final summary (main process)."""
    started = time.monotonic()
    model_cfg = make_model_config(cfg)
    kind = "cuda" if (cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())) else "cpu"
    ctx = setup_distributed(kind)
    try:
        with StopFlag() as stop:
            return _train(cfg, model_cfg, ctx, started, resume, export, progress_bar, stop)
    finally:
        if ctx.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class _Done:
    """What the run has done: saved in every checkpoint, restored on resume."""

    step: int = 0
    tokens_seen: int = 0
    best_val: float = math.inf
    #: Seconds trained before this process (a resumed run's earlier time).
    trained_seconds: float = 0.0
    last_val: dict[str, float] = field(default_factory=dict)
    last_val_step: int = -1
    skipped_steps: int = 0
    bad_in_a_row: int = 0


@dataclass
class _Data:
    """Training windows (sampled) and validation windows (fixed) of the run."""

    tables: TokenTables
    train_segments: list[SegmentWindows]
    val_segments: list[SegmentWindows]
    sampler: WindowSampler
    val_windows: list[tuple[int, Window]]
    val_songs: list[str]


def _setup_device(cfg: TrainConfig, ctx: Dist) -> tuple[torch.device, bool]:
    """The device of this rank (TF32 matmuls on CUDA) and torch's threads; whether to use bf16."""
    device = pick_device(cfg, ctx.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return device, cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")


def _autocast(device: torch.device, use_bf16: bool) -> Callable[[], Any]:
    def autocast() -> Any:
        if use_bf16:
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    return autocast


def _prepare_out_dir(cfg: TrainConfig, model_cfg: FigaroConfig, ctx: Dist) -> tuple[Path, Path]:
    """``out_dir`` and its ``checkpoints/``; the main process writes both configurations there."""
    out_dir = Path(cfg.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    if ctx.main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        model_cfg.save(out_dir / "config.json")
    return out_dir, ckpt_dir


def _load_data(cfg: TrainConfig, model_cfg: FigaroConfig, ctx: Dist) -> _Data:
    tables = TokenTables()
    context = model_cfg.context_size
    train_segments = prepare_windows(load_segments(cfg.data, cfg.train_split), tables, cfg.renumber_bars)
    val_segments = prepare_windows(load_segments(cfg.data, cfg.val_split), tables, cfg.renumber_bars)
    sampler = WindowSampler(train_segments, context, cfg.seed, ctx.rank, cfg.transpose)
    val_windows, val_songs = validation_windows(
        val_segments, context, cfg.val_windows_per_segment, cfg.val_max_windows
    )
    return _Data(tables, train_segments, val_segments, sampler, val_windows, val_songs)


def _build_model(
    cfg: TrainConfig, model_cfg: FigaroConfig, ctx: Dist, device: torch.device, resume_path: Path | None
) -> tuple[FigaroModel, torch.optim.Optimizer, _Done]:
    """The model (same initial weights on every rank) and its optimizer: fresh, fine-tuned from
    ``cfg.init_from``, or resumed from a checkpoint with what that run had done."""
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    model = FigaroModel(model_cfg).to(device)
    optimizer = make_optimizer(model, cfg, fused=device.type == "cuda")
    done = _Done()
    if cfg.init_from and resume_path is None:
        from training.figaro.export import load_exported_state

        state_dict = {k: v.float() for k, v in load_exported_state(cfg.init_from).items()}
        model.load_state_dict(state_dict)  # strict: a mismatch is an error, not a silent partial load
        if ctx.main:
            print(f"[train] fine-tuning {cfg.init_from}", flush=True)
    if resume_path is not None:
        ckpt = load_checkpoint(resume_path)
        if ckpt["model_config"] != model_cfg.to_dict():
            raise ValueError(f"{resume_path} holds a model of another configuration than this run's")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        done.step, done.tokens_seen = int(ckpt["step"]), int(ckpt["tokens_seen"])
        done.best_val, done.trained_seconds = float(ckpt["best_val_loss"]), float(ckpt["trained_seconds"])
        if ctx.main:
            print(f"[train] resumed from {resume_path} at step {done.step}", flush=True)
    return model, optimizer, done


def _wrap_for_training(
    model: torch.nn.Module, cfg: TrainConfig, ctx: Dist, device: torch.device
) -> torch.nn.Module:
    """What the loop calls: the model, compiled if asked, in DistributedDataParallel on several ranks."""
    train_model: torch.nn.Module = model
    if cfg.compile:
        train_model = torch.compile(model)  # type: ignore[assignment]
    if ctx.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return train_model


def _control(run_start: float, stop: StopFlag, ctx: Dist, device: torch.device) -> tuple[float, bool]:
    """One small collective per step: elapsed time (rank 0's) and the stop request."""
    control = torch.tensor([time.monotonic() - run_start, float(stop.set)], device=device)
    all_reduce(control, ctx, dist.ReduceOp.MAX if ctx.world > 1 else None)
    return float(control[0]), bool(control[1] > 0)


def _accumulate_gradients(
    train_model: torch.nn.Module,
    micro_batches: Sequence[dict[str, torch.Tensor]],
    cfg: TrainConfig,
    ctx: Dist,
    device: torch.device,
    autocast: Callable[[], Any],
    pad: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward over one step's micro-batches (gradients synchronised on the last);
    returns the summed token loss and the token count."""
    step_loss = torch.zeros((), device=device)
    step_tokens = torch.zeros((), device=device, dtype=torch.long)
    for micro, cpu_batch in enumerate(micro_batches):
        batch = {k: v.to(device, non_blocking=True) for k, v in cpu_batch.items()}
        sync = micro == cfg.grad_accum - 1 or ctx.world == 1
        with contextlib.nullcontext() if sync else train_model.no_sync():  # type: ignore[operator]
            with autocast():
                logits = train_model(
                    batch["desc_ids"],
                    batch["desc_bar_ids"],
                    batch["remi_ids"],
                    batch["remi_bar_ids"],
                    batch["remi_position_ids"],
                )
            loss_sum, n_tok = token_loss(logits, batch["labels"], pad)
            (loss_sum / max(1, int(n_tok)) / cfg.grad_accum).backward()
        step_loss += loss_sum.detach()
        step_tokens += n_tok
    return step_loss, step_tokens


def _optimizer_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig, done: _Done
) -> float:
    """Clip, step (skipped when the gradient norm is not finite, counted in ``done``), zero the
    gradients; returns the norm."""
    # the norm of the (already all-reduced) gradients is the same on every rank, so all skip together
    grad_norm = float(
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
    )
    if math.isfinite(grad_norm):
        optimizer.step()
        done.bad_in_a_row = 0
    else:
        done.skipped_steps += 1
        done.bad_in_a_row += 1
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def _start_row(
    cfg: TrainConfig,
    model_cfg: FigaroConfig,
    ctx: Dist,
    device: torch.device,
    use_bf16: bool,
    n_params: int,
    data: _Data,
    step: int,
) -> dict[str, Any]:
    """The log's ``start`` event: where the run starts, on what, with how much data."""
    context = model_cfg.context_size
    return {
        "event": "start",
        "step": step,
        "world_size": ctx.world,
        "device": str(device),
        "bf16": use_bf16,
        "parameters": n_params,
        "train_segments": len(data.train_segments),
        "val_segments": len(data.val_segments),
        "val_windows": len(data.val_windows),
        "val_songs": len(data.val_songs),
        "context_size": context,
        "tokens_per_step": cfg.batch_size * cfg.grad_accum * ctx.world * context,
    }


def _train_row(
    window_loss: float,
    window_tokens: int,
    ctx: Dist,
    device: torch.device,
    done: _Done,
    lr: float,
    grad_norm: float,
    started: float,
) -> dict[str, Any]:
    """The log's ``train`` event: the token-weighted loss since the last one, summed over the ranks
    (whose tokens are added to ``done.tokens_seen``)."""
    totals = torch.tensor([window_loss, float(window_tokens)], dtype=torch.float64, device=device)
    all_reduce(totals, ctx)
    done.tokens_seen += int(totals[1])
    return {
        "event": "train",
        "step": done.step,
        "train_loss": float(totals[0] / max(1.0, float(totals[1]))),
        "lr": lr,
        "grad_norm": grad_norm,
        "tokens": done.tokens_seen,
        "elapsed_s": time.monotonic() - started,
    }


def _train(
    cfg: TrainConfig,
    model_cfg: FigaroConfig,
    ctx: Dist,
    started: float,
    resume: str | None,
    export: str | None,
    progress_bar: bool,
    stop: StopFlag,
) -> dict[str, Any]:
    """The run in its steps: device, output folder, data, model; the loop (stop or budget check,
    learning rate, gradients, optimizer step, train log, validation, checkpoint); the end."""
    device, use_bf16 = _setup_device(cfg, ctx)
    autocast = _autocast(device, use_bf16)
    out_dir, ckpt_dir = _prepare_out_dir(cfg, model_cfg, ctx)
    log = RunLog(out_dir / "log.jsonl", ctx.main)
    data = _load_data(cfg, model_cfg, ctx)
    model, optimizer, done = _build_model(cfg, model_cfg, ctx, device, _resume_path(resume, ckpt_dir))
    train_model = _wrap_for_training(model, cfg, ctx, device)
    n_params = sum(p.numel() for p in model.parameters())
    log.write(_start_row(cfg, model_cfg, ctx, device, use_bf16, n_params, data, done.step))

    budget_s = cfg.max_minutes * 60.0 if cfg.max_minutes else None
    run_start = time.monotonic()
    pad = data.tables.pad
    window_loss, window_tokens = 0.0, 0
    reason = "max_steps"

    def state() -> dict[str, Any]:
        return {
            "step": done.step,
            "tokens_seen": done.tokens_seen,
            "best_val_loss": done.best_val,
            "trained_seconds": done.trained_seconds + (time.monotonic() - run_start),
            "train_config": asdict(cfg),
            "model_config": model_cfg.to_dict(),
            "command": " ".join(["python -m training.figaro.train", *sys.argv[1:]]),
            "validation": dict(done.last_val),
        }

    def run_validation() -> None:
        if done.last_val_step == done.step:
            return
        done.last_val_step = done.step
        done.last_val = validate(
            model, data.val_windows, len(data.val_songs), ctx, device, autocast, pad, cfg.eval_batch_size
        )
        log.write({"event": "val", "step": done.step, "tokens": done.tokens_seen, **done.last_val})
        if ctx.main and done.last_val["val_loss"] < done.best_val:
            done.best_val = done.last_val["val_loss"]
            save_checkpoint(ckpt_dir / "best.pt", model, optimizer, state())

    batches = step_batches(data.sampler, cfg, done.step, pad, pin=device.type == "cuda")
    model.train()
    for _ in progress(range(done.step, cfg.max_steps), progress_bar and ctx.main, done.step):
        elapsed, stop_requested = _control(run_start, stop, ctx, device)
        if stop_requested:
            reason = "signal"
            break
        if budget_s is not None and elapsed >= budget_s:
            reason = "max_minutes"
            break
        lr = learning_rate(cfg, done.step, elapsed / budget_s if budget_s else 0.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss, step_tokens = _accumulate_gradients(
            train_model, next(batches), cfg, ctx, device, autocast, pad
        )
        grad_norm = _optimizer_step(model, optimizer, cfg, done)
        done.step += 1
        if done.bad_in_a_row >= MAX_NONFINITE_STEPS:
            reason = "nonfinite"
            break

        window_loss += float(step_loss)
        window_tokens += int(step_tokens)
        if done.step % cfg.log_every == 0 or done.step == 1:
            row = _train_row(window_loss, window_tokens, ctx, device, done, lr, grad_norm, started)
            log.write(row, echo=not progress_bar)
            window_loss, window_tokens = 0.0, 0
        if done.step % cfg.eval_every == 0:
            run_validation()
        if done.step % cfg.checkpoint_every == 0 and ctx.main:
            save_checkpoint(ckpt_dir / "last.pt", model, optimizer, state())

    del batches  # stops DataLoader workers before the final validation
    # flush the unlogged tail of the token count
    totals = torch.tensor([float(window_tokens)], dtype=torch.float64, device=device)
    done.tokens_seen += int(all_reduce(totals, ctx)[0])
    run_validation()
    if ctx.main:
        save_checkpoint(ckpt_dir / "last.pt", model, optimizer, state())
    _write_rank_checksum(out_dir, model, ctx)
    summary = _end_row(reason, done, started, state()["trained_seconds"], n_params, ctx, device)
    log.write(summary)
    if ctx.main:
        _write_results(out_dir, ckpt_dir, summary, export)
    return summary


def _end_row(
    reason: str, done: _Done, started: float, trained_s: float, n_params: int, ctx: Dist, device: torch.device
) -> dict[str, Any]:
    """The log's ``end`` event, also the run's ``summary.json``: why and where it stopped, the last
    validation."""
    return {
        "event": "end",
        "reason": reason,
        "step": done.step,
        "tokens_seen": done.tokens_seen,
        "wall_s": time.monotonic() - started,
        "trained_s": trained_s,
        "skipped_steps": done.skipped_steps,
        "best_val_loss": done.best_val,
        "parameters": n_params,
        "world_size": ctx.world,
        "device": str(device),
        **done.last_val,
    }


def _write_results(out_dir: Path, ckpt_dir: Path, summary: dict[str, Any], export: str | None) -> None:
    """``summary.json``, the loss curves and, when asked, the exported best (else last) checkpoint."""
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with contextlib.suppress(Exception):  # plots are a convenience, never a failure
        plot_curves(out_dir / "log.jsonl", out_dir / "loss_curves.png")
    if export:
        source = ckpt_dir / ("best.pt" if (ckpt_dir / "best.pt").exists() else "last.pt")
        export_checkpoint(source, export)


def _resume_path(resume: str | None, ckpt_dir: Path) -> Path | None:
    if resume is None:
        return None
    if resume == "auto":
        path = ckpt_dir / "last.pt"
        return path if path.exists() else None
    path = Path(resume)
    if not path.exists():
        raise ValueError(f"checkpoint {path} does not exist")
    return path


def _write_rank_checksum(out_dir: Path, model: torch.nn.Module, ctx: Dist) -> None:
    """Each rank records a checksum of its weights: under DDP they must all agree."""
    total = sum(float(p.detach().double().sum()) for p in model.parameters())
    (out_dir / "ranks").mkdir(parents=True, exist_ok=True)
    (out_dir / "ranks" / f"{ctx.rank}.json").write_text(json.dumps({"rank": ctx.rank, "checksum": total}))


# --- export and plots -------------------------------------------------------------------------


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> list[Path]:
    """Write a training checkpoint's weights as fp16 safetensors (+ ``config.json``, ``training.json``)."""
    ckpt = load_checkpoint(checkpoint)
    model_cfg = FigaroConfig.from_dict(ckpt["model_config"])
    info = {k: ckpt[k] for k in ("step", "tokens_seen", "best_val_loss", "trained_seconds")}
    info["command"] = ckpt.get("command", "")
    info["validation"] = ckpt.get("validation", {})
    info["train_config"] = ckpt["train_config"]
    info["source_checkpoint"] = Path(checkpoint).name
    return export_fp16(ckpt["model"], model_cfg, out_dir, info)


def plot_curves(log_path: str | Path, png_path: str | Path) -> Path:
    """Training and validation loss against optimizer steps, as a PNG (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    train_rows = [r for r in rows if r.get("event") == "train"]
    val_rows = [r for r in rows if r.get("event") == "val"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in train_rows], [r["train_loss"] for r in train_rows], label="train", lw=1)
    ax.plot([r["step"] for r in val_rows], [r["val_loss"] for r in val_rows], "o-", label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title("FIGARO training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return Path(png_path)


# --- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.figaro.train", description=__doc__.split("\n")[0])
    p.add_argument("--config", help="JSON or TOML training config (see training/figaro/configs/)")
    p.add_argument("--data", help="dataset directory or pack (.npz); overrides the config")
    p.add_argument("--out-dir", help="run directory (checkpoints, log, plots)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--max-minutes", type=float, help="stop cleanly and save after this wall-clock budget")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"])
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--num-workers", type=int, help="DataLoader processes building batches")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override any config key, e.g. --set val_max_windows=64 (repeatable)",
    )
    p.add_argument(
        "--init",
        dest="init_from",
        metavar="MODEL_DIR",
        help="fine-tune this exported model (config.json + safetensors) instead of a fresh one",
    )
    p.add_argument("--resume", help="checkpoint to resume from, or 'auto' for OUT_DIR/checkpoints/last.pt")
    p.add_argument("--export", metavar="DIR", help="after training, write fp16 safetensors + config here")
    p.add_argument("--export-from", metavar="CKPT", help="only export this checkpoint to --export DIR")
    p.add_argument("--pack", metavar="OUT.npz", help="only write a compact pack of --data (train + val)")
    p.add_argument(
        "--pack-max-segments",
        type=int,
        metavar="N",
        help="with --pack: at most N training segments (a seeded random subset)",
    )
    p.add_argument("--plot", metavar="RUN_DIR", help="only draw RUN_DIR/loss_curves.png from its log")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    return p


_OVERRIDES = (
    "data",
    "out_dir",
    "max_steps",
    "max_minutes",
    "batch_size",
    "grad_accum",
    "lr",
    "device",
    "precision",
    "threads",
    "num_workers",
    "init_from",
)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.plot:
            print(plot_curves(Path(args.plot) / "log.jsonl", Path(args.plot) / "loss_curves.png"))
            return 0
        if args.pack:
            if not args.data:
                raise ValueError("--pack needs --data DATASET_DIR")
            path = pack_dataset(args.data, args.pack, max_train_segments=args.pack_max_segments)
            print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB)")
            return 0
        if args.export_from:
            if not args.export:
                raise ValueError("--export-from needs --export DIR")
            for path in export_checkpoint(args.export_from, args.export):
                print(path)
            return 0
        data = read_config_file(args.config) if args.config else {}
        for name in _OVERRIDES:
            value = getattr(args, name)
            if value is not None:
                data[name] = value
        for item in args.set:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
            try:
                data[key.strip()] = json.loads(raw)
            except json.JSONDecodeError:
                data[key.strip()] = raw
        cfg = make_train_config(data)
        train(cfg, resume=args.resume, export=args.export, progress_bar=not args.no_progress)
    except ValueError as err:
        print(f"train_figaro: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

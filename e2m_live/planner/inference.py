"""Fast step-by-step inference of the class LSTMs in NumPy.

Planning runs one token at a time, where PyTorch's per-call overhead dominates a model this small.
:class:`LSTMStepper` copies a trained model's weights into NumPy once and folds the parts of the
input that do not change during a plan: the embedding of every input id times the first layer's
input weights becomes one lookup table, and the features' contribution is computed once per plan.
``tests/test_planner_model.py`` checks it against the PyTorch forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

try:  # optional: without it BLAS keeps its own thread count
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - depends on the environment
    ThreadpoolController = None

from e2m_live.planner.model import OrderedClassLSTM, StreamLSTM

StepState = list[tuple[np.ndarray, np.ndarray]]


_controller = None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run NumPy's BLAS on one thread inside the block (needs ``threadpoolctl``; else a no-op).

    The planner's matrices are small: a multi-threaded BLAS gains nothing on them and, on a
    machine whose cores are busy (the live engine generates while it plays), its threads wait for
    each other. A batch of 40 plans ran 13x slower with two OpenBLAS threads on two busy cores.
    """
    global _controller
    if ThreadpoolController is None:
        yield
        return
    if _controller is None:
        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"):
        yield


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


class LSTMStepper:
    """NumPy copy of an :class:`OrderedClassLSTM` or :class:`StreamLSTM` for sampling."""

    def __init__(self, model: OrderedClassLSTM | StreamLSTM) -> None:
        cfg = model.config
        self.plan_bars = cfg.plan_bars
        self.hidden = cfg.hidden
        self.n_layers = cfg.layers
        lstm = model.lstm

        def weight(name: str) -> np.ndarray:
            return getattr(lstm, name).detach().cpu().numpy().astype(np.float32)

        with torch.no_grad():
            w_ih0 = weight("weight_ih_l0")  # [4H, F + E + 1]
            n_features = cfg.n_features
            emb = model.embed.weight.detach().cpu().numpy().astype(np.float32)  # [V, E]
            self.w_features = w_ih0[:, :n_features].T.copy()  # [F, 4H]
            self.token_table = emb @ w_ih0[:, n_features : n_features + cfg.embedding].T  # [V, 4H]
            self.w_position = w_ih0[:, n_features + cfg.embedding].copy()  # [4H]
            projection = getattr(model, "instruments", None)
            # Instrument multi-hot -> gates, folded through the projection: [n_instruments, 4H].
            offset = n_features + cfg.embedding + 1
            self.w_instruments = None
            if projection is not None:
                w_projection = projection.weight.detach().cpu().numpy().astype(np.float32)  # [I, 129]
                width = w_projection.shape[0]
                self.w_instruments = (w_ih0[:, offset : offset + width] @ w_projection).T.copy()
                offset += width
            # Context classes: each bin's embedding folded into the gates, [n_classes + 1, 4H] each.
            self.context_names: tuple[str, ...] = tuple(getattr(cfg, "context", ()))
            self.context_tables: list[np.ndarray] = []
            for embedding in getattr(model, "context", ()):
                table = embedding.weight.detach().cpu().numpy().astype(np.float32)
                width = table.shape[1]
                self.context_tables.append(table @ w_ih0[:, offset : offset + width].T)
                offset += width
            self.bias0 = weight("bias_ih_l0") + weight("bias_hh_l0")
            self.w_hh = [weight(f"weight_hh_l{k}").T.copy() for k in range(cfg.layers)]
            self.w_ih = [None] + [weight(f"weight_ih_l{k}").T.copy() for k in range(1, cfg.layers)]
            self.biases = [self.bias0] + [
                weight(f"bias_ih_l{k}") + weight(f"bias_hh_l{k}") for k in range(1, cfg.layers)
            ]
            self.w_out = model.head.weight.detach().cpu().numpy().astype(np.float32).T.copy()  # [H, C]
            self.b_out = model.head.bias.detach().cpu().numpy().astype(np.float32)
            mask = getattr(model, "feature_mask", None)
            self.feature_mask = None if mask is None else mask.detach().cpu().numpy().astype(np.float32)

    def start(self, features: np.ndarray) -> tuple[np.ndarray, StepState]:
        """Per-plan constant ``[B, 4H]`` (features times weights, plus biases) and a zero state."""
        feats = features if self.feature_mask is None else features * self.feature_mask
        constant = feats.astype(np.float32) @ self.w_features + self.bias0
        batch = features.shape[0]
        zeros = np.zeros((batch, self.hidden), dtype=np.float32)
        return constant, [(zeros, zeros) for _ in range(self.n_layers)]

    @property
    def uses_instruments(self) -> bool:
        return self.w_instruments is not None

    def instrument_gates(self, multi_hot: np.ndarray) -> np.ndarray:
        """Gate contributions ``[..., 4H]`` of instrument multi-hots ``[..., n_instruments]``."""
        if self.w_instruments is None:
            raise ValueError("this model is not conditioned on instruments")
        return multi_hot.astype(np.float32) @ self.w_instruments

    def context_gates(self, context: np.ndarray) -> np.ndarray:
        """Gate contributions ``[..., 4H]`` of the context bins ``[..., len(context_names)]``."""
        out = self.context_tables[0][context[..., 0]]
        for i in range(1, len(self.context_tables)):
            out = out + self.context_tables[i][context[..., i]]
        return out

    def step(
        self,
        constant: np.ndarray,
        previous: np.ndarray,
        bar: np.ndarray | int,
        state: StepState,
        extra: np.ndarray | None = None,
    ) -> tuple[np.ndarray, StepState]:
        """Logits ``[B, C]`` for input ids ``previous`` ``[B]`` at bar ``bar`` and the new state;
        ``extra`` ``[B, 4H]`` is added to the first layer's gates (see :meth:`instrument_gates`)."""
        # Plans longer than the training segments wrap the position (a new phrase every plan_bars).
        position = (np.asarray(bar) % self.plan_bars).astype(np.float32) / self.plan_bars
        x_gates = constant + self.token_table[previous] + np.multiply.outer(position, self.w_position)
        if extra is not None:
            x_gates = x_gates + extra
        hidden = self.hidden
        new_state: StepState = []
        layer_input = x_gates
        for k in range(self.n_layers):
            h, c = state[k]
            gates = (x_gates if k == 0 else layer_input @ self.w_ih[k] + self.biases[k]) + h @ self.w_hh[k]
            act = _sigmoid(gates)  # gate order i, f, g, o; g is recomputed with tanh below
            c = act[:, hidden : 2 * hidden] * c + act[:, :hidden] * np.tanh(gates[:, 2 * hidden : 3 * hidden])
            h = act[:, 3 * hidden :] * np.tanh(c)
            new_state.append((h, c))
            layer_input = h
        return layer_input @ self.w_out + self.b_out, new_state

"""SVDLinear: the growable SVD-form adapter around an ``nn.Linear`` (spec section 1.1-1.2).

The update is ``dW = scale * B diag(lambda) A`` with ``scale = alpha / (active rank + 1e-5)``.
Components are stored in *chunks*: each growth appends one chunk (``A_c``: n x d_in,
``B_c``: d_out x n, ``E_c``: n x 1, the lambdas), so existing tensors - and their optimizer
state - are never rebuilt. Chunks ``[0, n_active)`` are active; chunk ``n_active`` (if present)
is the reserve, whose lambdas are frozen at 1e-5 ("advance learning") or 0.

The forward pass is always the low-rank one, ``W0 x + scale * ((x A_eff^T) B^T)``, so under bf16
autocast the adapter's effect is computed at its own scale (never rounded at the scale of W0).
While the importance score is needed, a backward hook on the layer's output forms the one dense
gradient the exact score needs, ``dL/d(dW) = g^T x`` (``g`` = dL/d output, ``x`` = the adapter's
input), the same work as a full weight gradient and nothing in the forward pass, and reduces it to
the module's score. For evaluation, :meth:`SVDLinear.merge_for_eval` folds ``dW`` into a separate
merged weight (W0 itself is never modified).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from increlora.budget import svd_cost_per_rank

RESERVE_LAMBDA = 1e-5
RANK_EPS = 1e-5


class SVDLinear(nn.Module):
    """An ``nn.Linear`` plus a growable SVD-form low-rank update."""

    def __init__(
        self,
        base: nn.Linear,
        *,
        init_rank: int,
        alpha: float,
        dropout: float = 0.0,
        init_std: float = 0.02,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        """Wrap ``base``; ``generator`` (CPU) seeds the initial components' a and b."""
        super().__init__()
        self.base_layer = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.alpha = float(alpha)
        self.init_std = init_std
        # the adapter's own dtype, fixed at creation: the base weight may later be stored in bf16
        # (increlora.precision), while the trained tensors, reserves included, stay in this dtype
        self.param_dtype = base.weight.dtype
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.ParameterList()
        self.lora_B = nn.ParameterList()
        self.lora_E = nn.ParameterList()
        self.n_active = 0  # chunks [0, n_active) are active, chunks [n_active, len) are the reserve
        self.register_buffer("ranknum", torch.zeros((), dtype=torch.float32), persistent=True)
        self._ranknum = 0.0  # python copy of ranknum: no device sync in forward
        self.score_enabled = False  # score hook while the allocator needs scores
        self.include_reserve = True  # reserves contribute (lambda = 1e-5) until clean-up
        self.last_score: Optional[torch.Tensor] = None  # 0-dim tensor, set by the backward hook
        # gradient accumulation: the hook sums g^T x over the backward passes of one optimizer step and
        # finalize_score() scores the sum (off: every backward pass sets last_score, the project's own loop)
        self.score_accumulate = False
        self._score_grad: Optional[torch.Tensor] = None  # the summed g^T x (fp32) while accumulating
        # dtype of the score's dense product g^T x: "auto" = score_product_dtype(device) at the first
        # backward, None = the gradient's own dtype
        self.score_dtype: Union[torch.dtype, str, None] = "auto"
        self._merged: Optional[torch.Tensor] = None  # W0 + dW while merged for evaluation
        self.append_chunk(init_rank, lam=0.0, trainable_lambda=True, trainable_ab=True, generator=generator)
        self.n_active = 1
        self.ranknum.fill_(float(init_rank))
        self._ranknum = float(init_rank)

    # ------------------------------------------------------------------ structure
    @property
    def rank(self) -> int:
        """Active rank."""
        return sum(int(self.lora_E[i].shape[0]) for i in range(self.n_active))

    @property
    def has_reserve(self) -> bool:
        return len(self.lora_E) > self.n_active

    @property
    def reserve_size(self) -> int:
        return sum(int(self.lora_E[i].shape[0]) for i in range(self.n_active, len(self.lora_E)))

    def chunk_size(self, i: int) -> int:
        return int(self.lora_E[i].shape[0])

    @property
    def cost_per_rank(self) -> int:
        """Adapter parameters one rank costs: a (d_in) + b (d_out) + lambda (1)."""
        return svd_cost_per_rank(self.in_features, self.out_features)

    @property
    def scale(self) -> float:
        return self.alpha / (self._ranknum + RANK_EPS)

    def _randn(self, *shape: int, generator: Optional[torch.Generator]) -> torch.Tensor:
        w = self.base_layer.weight
        t = torch.empty(*shape, dtype=torch.float32, device="cpu")
        t.normal_(0.0, self.init_std, generator=generator)
        return t.to(device=w.device, dtype=self.param_dtype)

    def append_chunk(
        self,
        n: int,
        *,
        lam: float,
        trainable_lambda: bool,
        trainable_ab: bool,
        generator: Optional[torch.Generator] = None,
    ) -> tuple[nn.Parameter, ...]:
        """Append ``n`` components as one chunk; returns its (A, B, E) parameters."""
        w = self.base_layer.weight
        a = nn.Parameter(self._randn(n, self.in_features, generator=generator), requires_grad=trainable_ab)
        b = nn.Parameter(self._randn(self.out_features, n, generator=generator), requires_grad=trainable_ab)
        e = nn.Parameter(torch.full((n, 1), lam, dtype=self.param_dtype, device=w.device), requires_grad=trainable_lambda)
        self.lora_A.append(a)
        self.lora_B.append(b)
        self.lora_E.append(e)
        return a, b, e

    def split_reserve(self, first: int) -> tuple[tuple[nn.Parameter, ...], tuple[nn.Parameter, ...]]:
        """Split the first reserve chunk into two chunks of ``first`` and ``rest`` components.

        Returns (old A, B, E) and the new parameters ``(A1, B1, E1, A2, B2, E2)`` so the caller can
        move optimizer state; the values are unchanged.
        """
        i = self.n_active
        a, b, e = self.lora_A[i], self.lora_B[i], self.lora_E[i]
        parts = (
            nn.Parameter(a.data[:first].clone(), requires_grad=a.requires_grad),
            nn.Parameter(b.data[:, :first].clone(), requires_grad=b.requires_grad),
            nn.Parameter(e.data[:first].clone(), requires_grad=e.requires_grad),
            nn.Parameter(a.data[first:].clone(), requires_grad=a.requires_grad),
            nn.Parameter(b.data[:, first:].clone(), requires_grad=b.requires_grad),
            nn.Parameter(e.data[first:].clone(), requires_grad=e.requires_grad),
        )
        self.lora_A = _replace_at(self.lora_A, i, [parts[0], parts[3]])
        self.lora_B = _replace_at(self.lora_B, i, [parts[1], parts[4]])
        self.lora_E = _replace_at(self.lora_E, i, [parts[2], parts[5]])
        return (a, b, e), parts

    def drop_reserve(self) -> list[nn.Parameter]:
        """Remove every reserve chunk (clean-up); returns their parameters."""
        i = self.n_active
        out = [p for plist in (self.lora_A, self.lora_B, self.lora_E) for p in list(plist)[i:]]
        self.lora_A = _replace_at(self.lora_A, i, [], count=len(self.lora_A) - i)
        self.lora_B = _replace_at(self.lora_B, i, [], count=len(self.lora_B) - i)
        self.lora_E = _replace_at(self.lora_E, i, [], count=len(self.lora_E) - i)
        return out

    def set_ranknum(self, rank: int, *, compensate: bool) -> None:
        """Set the scale divisor; with ``compensate`` rescale every lambda so dW is unchanged."""
        old = self._ranknum + RANK_EPS
        new = float(rank) + RANK_EPS
        if compensate and float(rank) != self._ranknum:
            with torch.no_grad():
                for e in self.lora_E:
                    e.mul_(new / old)
        self.ranknum.fill_(float(rank))
        self._ranknum = float(rank)

    # ------------------------------------------------------------------ maths
    def _stacked(self, with_reserve: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = len(self.lora_E) if with_reserve else self.n_active
        if n == 1:
            return self.lora_A[0], self.lora_B[0], self.lora_E[0]
        a = torch.cat([self.lora_A[i] for i in range(n)], dim=0)
        b = torch.cat([self.lora_B[i] for i in range(n)], dim=1)
        e = torch.cat([self.lora_E[i] for i in range(n)], dim=0)
        return a, b, e

    def stacked_all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A (all rows, reserve included) and B (all columns) for the orthogonal regulariser."""
        a, b, _ = self._stacked(with_reserve=True)
        return a, b

    def delta_weight(self, with_reserve: Optional[bool] = None) -> torch.Tensor:
        """``dW = scale * B diag(E) A`` (d_out x d_in)."""
        a, b, e = self._stacked(self.include_reserve if with_reserve is None else with_reserve)
        return b @ (a * (e * self.scale))

    def _score_hook(self, x: torch.Tensor) -> Callable[[torch.Tensor], None]:
        """Backward hook on the output: ``I_k = sum |dW * g^T x| / sqrt(d_out d_in)`` (spec 1.3).

        The dense product ``g^T x`` runs in :attr:`score_dtype` (bf16 where the hardware multiplies
        bf16 natively: half the time of fp32 on an AMX CPU, accumulation in fp32 either way); the
        product with ``dW`` and the sum are fp32. With :attr:`score_accumulate` the product is added
        (in fp32) to the sum of this optimizer step's backward passes instead, and
        :meth:`finalize_score` scores that sum: under gradient accumulation the score is the one of
        the accumulated gradient, not of the last micro-batch.
        """

        def hook(grad: torch.Tensor) -> None:
            if self.score_dtype == "auto":
                self.score_dtype = score_product_dtype(grad.device)
            dtype = self.score_dtype or grad.dtype
            g2 = grad.reshape(-1, grad.shape[-1]).to(dtype)
            x2 = x.detach().reshape(-1, x.shape[-1]).to(dtype)
            dense_grad = g2.t() @ x2  # dL/d(dW), d_out x d_in
            with torch.no_grad():
                if self.score_accumulate:
                    if self._score_grad is None:
                        self._score_grad = dense_grad.float()
                    else:
                        self._score_grad.add_(dense_grad)
                    return
                self.last_score = self._score_of(dense_grad)

        return hook

    def _score_of(self, dense_grad: torch.Tensor) -> torch.Tensor:
        """``sum |dW * dense_grad| / sqrt(numel)`` in fp32 (no autograd)."""
        with torch.no_grad():
            dw = self.delta_weight().float()
            # in place on dW: the dense product is the step's largest temporary; no further copy of it
            return dw.mul_(dense_grad).abs_().sum() / math.sqrt(dw.numel())

    def finalize_score(self) -> None:
        """With :attr:`score_accumulate`: set :attr:`last_score` from the ``g^T x`` summed since the last call
        (the accumulated gradient's score) and clear the sum; nothing to do otherwise."""
        if self._score_grad is not None:
            self.last_score = self._score_of(self._score_grad)
            self._score_grad = None

    def merge_for_eval(self) -> None:
        """Use ``W0 + dW`` as one weight in eval mode (until :meth:`unmerge`); W0 is left untouched."""
        w = self.base_layer.weight
        with torch.no_grad():
            self._merged = w + self.delta_weight().to(w.dtype)

    def unmerge(self) -> None:
        self._merged = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self.base_layer
        if self._merged is not None and not self.training:
            return F.linear(x, self._merged, base.bias)
        a, b, e = self._stacked(self.include_reserve)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        adapter_in = self.dropout(x2)
        # W0 x + b0, then the adapter added by the same matrix product (addmm: no separate pass over the
        # N x d_out output); the scale rides on the r x d_in factor, not on the output
        low = F.linear(adapter_in, a * (e * self.scale))
        out = torch.addmm(F.linear(x2, base.weight, base.bias), low, b.t())
        if self.score_enabled and self.training and torch.is_grad_enabled() and out.requires_grad:
            out.register_hook(self._score_hook(adapter_in))
        return out.view(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, reserve={self.reserve_size}"


def score_product_dtype(device: torch.device) -> Optional[torch.dtype]:
    """bf16 where the device multiplies bf16 natively (CUDA; CPUs with AMX / AVX512-BF16), else None (fp32).

    The score's dense product ``g^T x`` costs what a full weight gradient costs; in bf16 it takes half
    the time on such hardware; its module score stays within 1e-3 of the fp32 one
    (tests/test_eval_and_precision.py), and benchmarks/score_precision.py trains a run both ways to
    show whether the growth decisions change.
    """
    if device.type == "cuda":
        return torch.bfloat16
    if device.type == "cpu":
        try:
            native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            native = False
        return torch.bfloat16 if native and torch.backends.mkldnn.is_available() else None
    return None


def _replace_at(plist: nn.ParameterList, index: int, new: list[nn.Parameter], count: int = 1) -> nn.ParameterList:
    """A ParameterList with items ``[index, index + count)`` replaced by ``new`` (others keep their objects)."""
    items = list(plist)
    items[index : index + count] = new
    return nn.ParameterList(items)

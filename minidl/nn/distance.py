"""Distance modules: thin wrappers over minidl.nn.functional's cosine_similarity and
pairwise_distance."""

from __future__ import annotations

from minidl.nn import functional as F
from minidl.nn.module import Module
from minidl.tensor import Tensor

__all__ = ["CosineSimilarity", "PairwiseDistance"]


class CosineSimilarity(Module):
    """F.cosine_similarity(x1, x2, dim, eps): x1, x2 broadcast together, (..., D, ...) ->
    (..., ...) with D at dim."""

    def __init__(self, dim: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return F.cosine_similarity(x1, x2, self.dim, self.eps)


class PairwiseDistance(Module):
    """F.pairwise_distance(x1, x2, norm, eps, keepdim): ||x1 - x2 + eps||_norm over the last
    dim, (..., D) -> (...)."""

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> None:
        super().__init__()
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return F.pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)

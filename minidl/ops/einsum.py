"""einsum: NumPy's einsum forward; the gradient of each operand is the einsum of the output
gradient with the other operands, written to that operand's subscripts.

Subscripts only one operand has and the output lacks were summed: its gradient is broadcast
back over them. An operand that repeats a subscript ("ii->i", "ii->") was read on a diagonal:
its gradient is computed for the diagonal and written there, zeros elsewhere. A size-1 dim
broadcast against a larger one is summed back to 1.
"""

from __future__ import annotations

import string

import numpy as np

from minidl.graph import Context, Function
from minidl.ops import contiguous


def parse_equation(equation: str, shapes: list[tuple]) -> tuple[list[str], str]:
    """The subscripts of each operand and of the output, with "..." spelled out as letters
    and an implicit output made explicit (NumPy's rule: the letters used once, sorted, after
    the ellipsis dims)."""
    equation = equation.replace(" ", "")
    inputs, arrow, output = equation.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum: the equation {equation!r} has {len(terms)} operands, "
                         f"{len(shapes)} were given")
    letters = [c for c in equation if c.isalpha()]
    bad = set(equation) - set(string.ascii_letters) - set(",.->")
    if bad:
        raise ValueError(f"einsum: invalid subscript characters {sorted(bad)} in {equation!r}")
    spare = [c for c in string.ascii_letters if c not in letters]
    ellipsis_ndim = 0
    for term, shape in zip(terms, shapes):
        explicit = len(term.replace("...", ""))
        if "..." in term:
            ellipsis_ndim = max(ellipsis_ndim, len(shape) - explicit)
        elif explicit != len(shape):
            raise ValueError(f"einsum: operand subscripts {term!r} do not match its "
                             f"{len(shape)} dims (shape {shape})")
    ellipsis = "".join(spare[:ellipsis_ndim])
    spelled = []
    for term, shape in zip(terms, shapes):
        if "..." in term:
            own = len(shape) - len(term.replace("...", ""))
            if own < 0:
                raise ValueError(f"einsum: operand subscripts {term!r} have more letters than "
                                 f"its {len(shape)} dims")
            term = term.replace("...", ellipsis[ellipsis_ndim - own:] if own else "")
        spelled.append(term)
    if arrow:
        output = output.replace("...", ellipsis)
    else:
        used = "".join(spelled)
        output = ellipsis + "".join(sorted(c for c in set(used) if used.count(c) == 1
                                           and c not in ellipsis))
    return spelled, output


class EinsumOp(Function):
    name = "einsum"

    @staticmethod
    def forward(ctx: Context, *operands, equation: str) -> np.ndarray:
        terms, output = parse_equation(equation, [np.shape(a) for a in operands])
        ctx.terms, ctx.output = terms, output
        ctx.save_for_backward(*operands)
        spec = ",".join(terms) + "->" + output
        return contiguous(np.einsum(spec, *operands, optimize=len(operands) > 2))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        operands = ctx.saved_tensors
        sizes: dict[str, int] = {}
        for term, a in zip(ctx.terms, operands):
            for c, n in zip(term, np.shape(a)):
                sizes[c] = max(sizes.get(c, 1), n)
        grads = []
        for i, (term, need) in enumerate(zip(ctx.terms, ctx.needs_input_grad)):
            if not need:
                grads.append(None)
                continue
            others = [t for j, t in enumerate(ctx.terms) if j != i]
            reachable = set(ctx.output).union(*others)
            letters = "".join(dict.fromkeys(term))  # a repeated subscript once
            kept = "".join(c for c in letters if c in reachable)
            spec = ",".join([ctx.output] + others) + "->" + kept
            partial = np.einsum(spec, g, *(a for j, a in enumerate(operands) if j != i),
                                optimize=len(operands) > 1)
            # Back to the operand's own order, the summed-only-here subscripts restored.
            full = partial.reshape([sizes[c] if c in reachable else 1 for c in letters])
            full = np.broadcast_to(full, [sizes[c] for c in letters])
            shape = np.shape(operands[i])
            if len(letters) != len(term):
                grids = np.ogrid[tuple(slice(0, sizes[c]) for c in letters)]
                diagonal = np.zeros(shape, g.dtype)
                diagonal[tuple(grids[letters.index(c)] for c in term)] = full
                full = diagonal
            squeezed = tuple(k for k, n in enumerate(shape) if n == 1 and full.shape[k] != 1)
            if squeezed:
                full = full.sum(axis=squeezed, keepdims=True)
            grads.append(contiguous(np.asarray(full, g.dtype)))
        return tuple(grads)

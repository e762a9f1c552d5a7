"""The block layout of a stacked representation: which columns came from which member.

``StackingEmbedder`` returns a :class:`BlockArray`, a float32 ndarray that carries its
layout, so that ``BiLSTMClassifier`` later in the same ``Pipeline`` can treat each block as
one sequence step without the user repeating the widths.

Import rule: a leaf (numpy only).
"""

from __future__ import annotations

import numpy as np

# The name of the block of meta-learner probabilities that StackingEmbedder appends last.
META_BLOCK = "meta"


class BlockArray(np.ndarray):
    """A 2-D ndarray with a ``blocks`` attribute: a list of ``(name, width)`` pairs.

    Row selections keep the layout; anything that changes the number of columns drops it.

    Examples
    --------
    >>> X = BlockArray(np.zeros((2, 5)), [("a", 2), ("b", 3)])
    >>> X[:1].blocks
    [('a', 2), ('b', 3)]
    """

    def __new__(cls, data, blocks: list[tuple[str, int]]):
        obj = np.asarray(data, dtype=np.float32).view(cls)
        obj.blocks = check_blocks(blocks, obj.shape[1])
        return obj

    def __array_finalize__(self, obj):
        blocks = getattr(obj, "blocks", None)
        width = sum(w for _, w in blocks) if blocks else None
        self.blocks = blocks if self.ndim == 2 and self.shape[1] == width else None

    # The layout travels with the data through pickling (joblib workers, GridSearchCV with
    # n_jobs > 1); ndarray's own pickle keeps only the numbers.
    def __reduce__(self):
        constructor, args, state = super().__reduce__()
        return constructor, args, (state, self.blocks)

    def __setstate__(self, state):
        array_state, self.blocks = state
        super().__setstate__(array_state)


def check_blocks(blocks, n_features: int) -> list[tuple[str, int]]:
    """Normalise widths or ``(name, width)`` pairs and check that they add up."""
    pairs = []
    for i, block in enumerate(blocks):
        name, width = block if isinstance(block, (tuple, list)) else (f"block{i}", block)
        if not isinstance(width, (int, np.integer)) or width < 1:
            raise ValueError(f"Block {name!r} has width {width!r}; widths must be integers >= 1.")
        pairs.append((str(name), int(width)))
    total = sum(w for _, w in pairs)
    if total != n_features:
        raise ValueError(
            f"The block layout {pairs} adds up to {total} columns, but X has {n_features}."
        )
    return pairs


def block_layout(X) -> list[tuple[str, int]] | None:
    """The layout carried by ``X``, or ``None`` for a plain array."""
    return getattr(X, "blocks", None)


def resolve_blocks(blocks, carried: list[tuple[str, int]] | None,
                   n_features: int) -> list[tuple[str, int]]:
    """The layout a net fits on: ``blocks="auto"`` takes the one X carries (else one block),
    ``"single"`` one block, an explicit layout is checked against ``n_features``."""
    if isinstance(blocks, str):
        if blocks == "auto" and carried is not None:
            return carried
        return [("X", n_features)] if n_features else []
    return check_blocks(blocks, n_features)


def check_same_layout(X, blocks, fitted_blocks: list, fitted_word_blocks: list) -> None:
    """Refuse an X whose layout differs from the one a net was fitted on (a layout read
    from X must match; ``"single"`` or an explicit ``blocks`` overrides what X carries)."""
    carried = block_layout(X)
    from_x = isinstance(blocks, str) and blocks == "auto"
    if from_x and carried is not None and \
            [w for _, w in carried] != [w for _, w in fitted_blocks]:
        raise ValueError(f"X carries the block layout {carried}, but this net was fitted "
                         f"on {fitted_blocks}.")
    words = getattr(X, "word_blocks", [])
    if [w for _, w in words] != [w for _, w in fitted_word_blocks]:
        raise ValueError(f"X carries the word-level layout {words}, but this net was "
                         f"fitted on {fitted_word_blocks} (empty: block mode).")

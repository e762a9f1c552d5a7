"""Tokenise once, then feed the encoder (and the Bi-LSTM) batches of similar length.

:class:`Tokens` remembers each text's token ids, so that one ``fit_transform`` (fine-tuning,
then encoding, on one device or several) tokenises every distinct text once.

Import rule: a leaf (numpy and torch only).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


def tokenize(tokenizer, texts: list[str], max_length: int, offsets: bool = False
             ) -> tuple[list[list[int]], list[bool], list | None]:
    """Token ids of each text cut at ``max_length``, whether each text was cut, and (with
    ``offsets``, fast tokenizers only) each token's character ``(start, end)``."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=True,
                        return_attention_mask=False, return_token_type_ids=False,
                        return_offsets_mapping=offsets)
    ids = encoded["input_ids"]
    at_limit = [i for i, seq in enumerate(ids) if len(seq) >= max_length]
    cut = [False] * len(ids)
    if at_limit:  # only texts that reached the limit can have been cut
        # verbose=False: the caller warns about cut texts; transformers' own "longer than the
        # maximum" log line would only repeat it
        full = tokenizer([texts[i] for i in at_limit], add_special_tokens=True,
                         return_attention_mask=False, return_token_type_ids=False,
                         verbose=False)["input_ids"]
        for i, seq in zip(at_limit, full, strict=True):
            cut[i] = len(seq) > max_length
    return ids, cut, encoded["offset_mapping"] if offsets else None


class Tokens:
    """Token ids of texts, each distinct text tokenised once for the life of this object.

    ``of(texts)`` returns the ids of ``texts`` in their order (cut at ``max_length``), how
    many of them were cut, and with ``offsets`` (word mode) each token's character span in
    the text with ``prefix`` prepended. Texts not seen before are tokenised in one call.
    """

    def __init__(self, tokenizer, max_length: int, prefix: str = "", offsets: bool = False):
        self.tokenizer, self.max_length, self.prefix = tokenizer, max_length, prefix
        self.offsets = offsets
        self._by_text: dict[str, tuple[list[int], bool, list | None]] = {}

    def of(self, texts: list[str]) -> tuple[list[list[int]], int, list | None]:
        new = [t for t in dict.fromkeys(texts) if t not in self._by_text]
        if new:
            ids, cut, offsets = tokenize(self.tokenizer, [self.prefix + t for t in new],
                                         self.max_length, self.offsets)
            for i, text in enumerate(new):
                self._by_text[text] = (ids[i], cut[i], offsets[i] if offsets else None)
        entries = [self._by_text[t] for t in texts]  # only(): every text is here already
        return ([e[0] for e in entries], sum(e[1] for e in entries),
                [e[2] for e in entries] if self.offsets else None)


    def only(self, texts: list[str]) -> Tokens:
        """The ids of ``texts`` alone, without the tokenizer: what a worker process that
        encodes these texts needs (it never tokenises again)."""
        part = Tokens(None, self.max_length, self.prefix, self.offsets)
        part._by_text = {t: self._by_text[t] for t in texts}
        return part


def prepend_labels(tokenizer, names: list[str], token_ids: list[list[int]], max_length: int
                   ) -> tuple[list[list[int]], list[int]]:
    """Each text's ids as the second segment of a pair whose first is the label names (after
    SpanEmo: ``[CLS] anger fear joy [SEP] text [SEP]``, in the tokenizer's own pair layout),
    cut to ``max_length`` in the text; and the position of each label name's first piece."""
    pieces = [tokenizer(name, add_special_tokens=False)["input_ids"] for name in names]
    if any(not p for p in pieces):
        empty = next(name for name, p in zip(names, pieces, strict=True) if not p)
        raise ValueError(f"The label name {empty!r} gives no tokens to read the label from.")
    # the layouts, read from two one-word texts: the special tokens around a single text
    # (cut from the texts' ids) and around each segment of a pair
    a, b = (tokenizer(w, add_special_tokens=False)["input_ids"] for w in ("a", "b"))
    single = tokenizer("a")["input_ids"]
    lead = _find(single, a)
    trail = len(single) - lead - len(a)
    pair = tokenizer("a", "b")["input_ids"]
    first = _find(pair, a)
    second = _find(pair, b, first + len(a))
    before, between, after = pair[:first], pair[first + len(a):second], pair[second + len(b):]
    labels = [t for p in pieces for t in p]
    room = max_length - len(before) - len(labels) - len(between) - len(after)
    if room < 1:
        raise ValueError(f"The {len(names)} label names take {len(labels)} tokens; "
                         f"max_length={max_length} leaves no room for the text.")
    starts = np.cumsum([0] + [len(p) for p in pieces[:-1]]) + len(before)
    pairs = [before + labels + between + ids[lead:len(ids) - trail][:room] + after
             for ids in token_ids]
    return pairs, [int(i) for i in starts]


def _find(ids: list[int], part: list[int], start: int = 0) -> int:
    """Where ``part`` first occurs in ``ids`` at or after ``start``."""
    return next(i for i in range(start, len(ids) - len(part) + 1)
                if ids[i:i + len(part)] == part)


def padded_width(length: int, multiple: int | None, max_length: int) -> int | None:
    """The width a text of ``length`` tokens is padded to: the next multiple of
    ``multiple``, at most ``max_length`` (the encoder's positions end there); ``None`` for
    no width of its own (its batch's longest)."""
    if multiple is None:
        return None
    return max(length, min(-(-length // multiple) * multiple, max_length))


def length_sorted_batches(
    ids: list[list[int]], batch_size: int, pad_id: int, multiple: int | None = None,
    max_length: int | None = None,
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Yield (positions, input_ids, attention_mask), longest batches first.

    With ``multiple``, each batch holds texts of one :func:`padded_width` only, padded to
    it: a text is then always encoded at the same width whatever else is encoded (with
    widths set by the batch's longest text a text's bfloat16 states moved by up to 0.04).
    Without, batches are padded to their longest text (what a forward pass on packed tokens
    takes: it drops the padding).

    ``positions`` are the indices into ``ids`` of the batch's rows, so callers put
    each output row back where its text came from.
    """
    for positions, width in _batch_rows(ids, batch_size, multiple, max_length):
        yield (positions, *pad_batch([ids[p] for p in positions], pad_id, width))


def n_batches(ids: list[list[int]], batch_size: int, multiple: int | None = None,
              max_length: int | None = None) -> int:
    """How many batches :func:`length_sorted_batches` yields (for a progress bar)."""
    return sum(1 for _ in _batch_rows(ids, batch_size, multiple, max_length))


def _batch_rows(ids, batch_size, multiple, max_length):
    """(rows, width) of each batch: the rows longest first, cut into runs of one width,
    then into ``batch_size`` rows."""
    order = np.argsort([-len(seq) for seq in ids], kind="stable")
    widths = [padded_width(len(ids[p]), multiple, max_length or len(ids[p])) for p in order]
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < batch_size and widths[end] == widths[start]:
            end += 1
        yield order[start:end], widths[start]
        start = end


def bucketed_batches(
    lengths: Sequence[int] | np.ndarray, batch_size: int, generator: torch.Generator | None = None,
    pool: int = 50,
) -> list[np.ndarray]:
    """Shuffled training batches of similar length: shuffle, sort each run of
    ``pool * batch_size`` rows by length, cut it into batches, shuffle the batches.

    Padding (and so compute) falls to little more than the texts' own tokens, while every
    epoch still sees the rows in a new random order.
    """
    order = torch.randperm(len(lengths), generator=generator).numpy()
    lengths_arr = np.asarray(lengths)
    batches = []
    for start in range(0, len(order), pool * batch_size):
        chunk = order[start : start + pool * batch_size]
        chunk = chunk[np.argsort(lengths_arr[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    shuffled = torch.randperm(len(batches), generator=generator).numpy()
    return [batches[i] for i in shuffled]


def pad_batch(seqs: list[list[int]], pad_id: int, width: int | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to ``width`` (default: the longest):
    (input_ids, attention_mask)."""
    width = max(len(seq) for seq in seqs) if width is None else width
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        input_ids[row, : len(seq)] = torch.as_tensor(seq)
        mask[row, : len(seq)] = 1
    return input_ids, mask

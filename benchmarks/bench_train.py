"""Seconds per epoch: BiLSTMClassifier against a hand-written PyTorch loop (run by hand).

    python benchmarks/bench_train.py

Both train the same BiLSTMModule with the same HybridLoss, data, batch size and optimiser on
2 CPU threads, in alternating rounds in one process. The data has the shape of a real stack:
10,000 rows of [MiniLM 384 | MiniLM 384 | char TF-IDF 128 | meta 28] and 28 labels.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from machine import describe

from skstack import BiLSTMClassifier, BlockArray, HybridLoss
from skstack.nets import BiLSTMModule

BLOCKS = [("minilm", 384), ("sre", 384), ("chars", 128), ("meta", 28)]
N, L, EPOCHS, BATCH = 10_000, 28, 4, 64
LOSS = {"corr_weight": 0.1, "contrastive_weight": 0.1}


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, sum(w for _, w in BLOCKS))).astype(np.float32)
    Y = (rng.random((N, L)) < 0.05).astype(np.float32)
    return X, Y


def skorch_epochs(X, Y) -> list[float]:
    net = BiLSTMClassifier(max_epochs=EPOCHS, batch_size=BATCH, random_state=0,
                           criterion__corr_weight=LOSS["corr_weight"],
                           criterion__contrastive_weight=LOSS["contrastive_weight"])
    net.fit(BlockArray(X, BLOCKS), Y)
    return list(net.history[:, "dur"])


def hand_epochs(X, Y) -> list[float]:
    torch.manual_seed(0)
    module = BiLSTMModule([w for _, w in BLOCKS], L)
    criterion = HybridLoss(**LOSS).fit(Y)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.as_tensor(X), torch.as_tensor(Y)),
        batch_size=BATCH, shuffle=True)
    durations = []
    for _ in range(EPOCHS):
        start = time.perf_counter()
        module.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            logits, hidden = module(xb)
            loss = criterion(logits, yb, hidden)
            loss.backward()
            optimizer.step()
        durations.append(time.perf_counter() - start)
    return durations


def main() -> None:
    print(describe())  # which CPU (and GPU) these figures come from
    torch.set_num_threads(2)
    print(f"data: {N} rows, blocks {BLOCKS}, {L} labels; batch {BATCH}; {EPOCHS} epochs a run")
    X, Y = data()
    ratios = []
    for round_ in range(5):
        hand = hand_epochs(X, Y)
        ours = skorch_epochs(X, Y)
        ratio = np.median(ours) / np.median(hand)
        ratios.append(ratio)
        print(f"round {round_}: hand loop {np.median(hand):.2f} s/epoch, BiLSTMClassifier "
              f"{np.median(ours):.2f} s/epoch, ratio {ratio:.3f}")
    print(f"median ratio BiLSTMClassifier / hand loop: {np.median(ratios):.3f}")


if __name__ == "__main__":
    main()

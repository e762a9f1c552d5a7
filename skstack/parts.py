"""The parts of a model: one walker for every module that looks inside one.

A model holds others: a ``Pipeline`` its steps, a search its ``best_estimator_``, a rule its
fitted ``estimator_``, an average its ``estimators_``, a stack its ``members_`` and
``meta_learner_``, and each of them the templates they were cloned from (parameters that are
estimators: ``estimator``, ``members``, a search's ``estimator``). :func:`walk` visits all
of them once, every part that predicts (outermost first) before any template, so the first
part of a kind is one that predicts; the model card, the report, the server, the CLI and
``warm_cache`` all look through it.

Import rule: ``skstack._validation`` (a leaf above the leaves); no estimator module.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from skstack._validation import unwrap_search

# fitted attributes that hold further parts (one, or (name, part) pairs)
_FITTED = ("best_estimator_", "estimator_", "estimators_", "members_", "meta_learner_")


def _is_part(value) -> bool:
    return hasattr(value, "fit") and not isinstance(value, type)


def _inside(value) -> list:
    """The parts a value holds: itself, or the estimators of ``(name, part)`` pairs."""
    if _is_part(value):
        return [value]
    if isinstance(value, (list, tuple)):
        return [item[1] for item in value if isinstance(item, (list, tuple))
                and len(item) >= 2 and _is_part(item[1])]
    return []


def _children(part) -> tuple[list, list]:
    """The parts that ``part`` works with (its steps, its fitted parts) and the templates
    they were cloned from (parameters that are estimators)."""
    working = []
    for _, step in getattr(part, "steps", None) or []:
        working += _inside(step)
    for attr in _FITTED:
        working += _inside(getattr(part, attr, None))
    templates = []
    if hasattr(part, "get_params"):
        for value in part.get_params(deep=False).values():
            templates += _inside(value)
    return working, templates


def walk(model) -> Iterator:
    """``model`` and every part inside it, each once: the parts that predict, outermost
    first, then the templates they were cloned from.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn.linear_model import LogisticRegression
    >>> [type(p).__name__ for p in walk(make_pipeline(StandardScaler(), LogisticRegression()))]
    ['Pipeline', 'StandardScaler', 'LogisticRegression']
    """
    seen, working, templates = set(), deque([model]), deque()
    while working or templates:
        part = (working or templates).popleft()
        if id(part) in seen:
            continue
        seen.add(id(part))
        yield part
        inside, cloned_from = _children(part)
        working.extend(inside)
        templates.extend(cloned_from)


def find_part(model, cls: type):
    """The first instance of ``cls`` in ``model`` (see :func:`walk`); ``None`` if none."""
    return next((p for p in walk(model) if isinstance(p, cls)), None)


def final_step(model):
    """What predicts at the end of ``model``: a fitted search's ``best_estimator_``, a
    pipeline's last step (of its last step, for nested pipelines), or the model itself."""
    model = unwrap_search(model, "use")
    while hasattr(model, "steps"):
        model = unwrap_search(model.steps[-1][1], "use")
    return model

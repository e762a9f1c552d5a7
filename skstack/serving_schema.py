"""The OpenAPI 3 description of ``skstack serve``'s routes, at ``GET /openapi.json``.

Built from the served model's labels (in the schemas and the examples) and the server's
limits (``maxItems``, ``maxLength``), so that a client generator or a validator sees what
this server accepts. ``python -m skstack.serving_schema`` prints the reference page of the
docs (``docs/http_api.md``), made from the same description with example labels.

Import rule: the standard library only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict:
    reasons = {400: "a malformed request (which item, and why)", 401: "no or a wrong API key",
               413: "past a limit (texts, characters, words, body size)",
               500: "the model failed on this request", 503: "too many requests waiting"}
    return {str(c): {"description": reasons[c],
                     "content": {"application/json": {"schema": _ERROR}}} for c in codes}


def openapi(labels: Sequence[str], *, max_texts: int, max_chars: int,
            max_explain_words: int, secured: bool, version: str) -> dict:
    """The OpenAPI 3.1 document of a server of a model with ``labels``, under its limits;
    ``secured``: API keys are required (a bearer scheme on every route but ``/`` and
    ``/health``)."""
    labels = [str(n) for n in labels]
    texts = {"type": "array", "maxItems": max_texts,
             "items": {"type": "string", "maxLength": max_chars, "pattern": "\\S"},
             "description": "The texts to label, in order; each has at least one character "
                            "that is not white space."}
    probabilities = {"type": "object", "additionalProperties": False,
                     "properties": {n: {"type": "number", "minimum": 0, "maximum": 1}
                                    for n in labels},
                     "required": labels}
    label_list = {"type": "array", "items": {"type": "string", "enum": labels}}
    example_text = "thank you so much!"
    schemas = {
        "Error": {"type": "object", "required": ["error"],
                  "properties": {"error": {"type": "string",
                                           "description": "One line: what is wrong."}}},
        "PredictRequest": {"type": "object", "required": ["texts"],
                           "properties": {"texts": texts},
                           "example": {"texts": [example_text]}},
        "Prediction": {"type": "object", "required": ["labels", "probabilities"],
                       "properties": {"labels": label_list, "probabilities": probabilities}},
        "PredictResponse": {
            "type": "object", "required": ["predictions", "thresholds"],
            "properties": {"predictions": {"type": "array",
                                           "items": {"$ref": "#/components/schemas/Prediction"}},
                           "thresholds": probabilities},
            "example": {"predictions": [{"labels": labels[:1],
                                         "probabilities": {n: 0.5 for n in labels}}],
                        "thresholds": {n: 0.5 for n in labels}}},
        "ExplainRequest": {"type": "object", "required": ["texts"],
                           "properties": {"texts": texts, "labels": label_list},
                           "description": f"At most {max_explain_words} words in all.",
                           "example": {"texts": [example_text], "labels": labels[:1]}},
        "Explanation": {"type": "object",
                        "required": ["text", "words", "spans", "probabilities",
                                     "contributions"],
                        "properties": {
                            "text": {"type": "string"},
                            "words": {"type": "array", "items": {"type": "string"}},
                            "spans": {"type": "array", "items": {
                                "type": "array", "items": {"type": "integer"},
                                "minItems": 2, "maxItems": 2}},
                            "probabilities": {"type": "object", "additionalProperties": {
                                "type": "number"}},
                            "contributions": {"type": "object", "additionalProperties": {
                                "type": "array", "items": {"type": "number"}}}}},
        "ExplainResponse": {"type": "object", "required": ["explanations"],
                            "properties": {"explanations": {"type": "array", "items": {
                                "$ref": "#/components/schemas/Explanation"}}}},
    }

    def post(summary: str, request: str, response: str) -> dict:
        return {"post": {"summary": summary, "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}}},
            "responses": {"200": {"description": "the answer, one entry per text", "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{response}"}}}},
                **_errors(400, *((401,) if secured else ()), 413, 500, 503)}}}

    def get(summary: str, kind: str, schema: dict, open_route: bool = False) -> dict:
        operation = {"summary": summary, "responses": {"200": {
            "description": summary, "content": {kind: {"schema": schema}}},
            **(_errors(401) if secured and not open_route else {})}}
        if open_route and secured:
            operation["security"] = []
        return {"get": operation}

    text = {"type": "string"}
    document = {
        "openapi": "3.1.0",
        "info": {"title": "skstack serve", "version": version,
                 "description": "Multi-label text classification: a fitted skstack model "
                                "behind HTTP; requests are micro-batched into model calls."},
        "paths": {
            "/predict": post("Each text's labels and per-label probabilities",
                             "PredictRequest", "PredictResponse"),
            "/explain": post("Each word's contribution to each label (occlusion)",
                             "ExplainRequest", "ExplainResponse"),
            "/labels": get("The labels, their thresholds and the rule's limits",
                           "application/json", {"type": "object"}),
            "/health": get("Whether the server is up, and its queue", "application/json",
                           {"type": "object"}, open_route=True),
            "/card": get("The model card", "text/markdown", text),
            "/metrics": get("Prometheus metrics", "text/plain", text),
            "/openapi.json": get("This description", "application/json", {"type": "object"}),
            "/": get("The demo page", "text/html", text, open_route=True),
            "/examples": get("The demo page's example texts", "application/json",
                             {"type": "object", "properties": {"examples": {
                                 "type": "array", "items": {"type": "string"}}}},
                             open_route=True),
        },
        "components": {"schemas": schemas},
    }
    if secured:
        document["components"]["securitySchemes"] = {"apiKey": {"type": "http",
                                                                 "scheme": "bearer"}}
        document["security"] = [{"apiKey": []}]
    return document


def markdown(document: dict) -> str:
    """A reference page of ``document``: each route, what it takes and what it answers."""
    lines = ["# HTTP API (`skstack serve`)", "",
             "Generated from the server's own OpenAPI description (`GET /openapi.json`) with "
             "example labels; a running server describes its model's labels and limits. "
             "Regenerate with `python -m skstack.serving_schema > docs/http_api.md`.", "",
             "| route | method | what it does | request body | answers |",
             "|---|---|---|---|---|"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            body = operation.get("requestBody", {}).get("content", {}).get(
                "application/json", {}).get("schema", {}).get("$ref", "")
            codes = ", ".join(operation["responses"])
            lines.append(f"| `{path}` | {method.upper()} | {operation['summary']} | "
                         f"{body.rsplit('/', 1)[-1] or '—'} | {codes} |")
    lines += ["", "## Schemas", ""]
    for name, schema in document["components"]["schemas"].items():
        lines += [f"### {name}", "", "```json", json.dumps(schema, indent=1), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown(openapi(["joy", "anger", "fear"], max_texts=256,
                                      max_chars=10_000, max_explain_words=512,
                                      secured=False, version="(the server's)")))

"""Evaluation texts in your own words: spec queries, and the zero-shot names of a data set's classes.

Spec queries (``read_spec_queries``), scored by the same spec_p1 / spec_p10 as the generated ones: one JSON
object per line, ``{"text": "a loveseat for two people", "category": "sofa", "attributes": {"seats": "2"}}``.
A shape is relevant where its category matches and every named attribute has the named value
(``attributes`` may be empty or left out). Blank lines and lines starting with ``#`` are skipped.

Class names (``read_class_prompts``): one JSON object from category id to a readable name or a list of
prompts, ``{"pin_header": "pin header connector", "03001627": ["a chair", "a 3d model of a chair"]}``;
ids left out keep their own words ("night_stand" -> "night stand").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from daer.errors import BadInputError
from daer.synth.captions import SpecQuery

MAX_QUERIES = 100_000
MAX_CLASSES = 100_000
MAX_PROMPT_CHARS = 500


def read_spec_queries(path: str | os.PathLike[str]) -> list[SpecQuery]:
    """The queries of a JSONL file; a bad line is refused with its number and what is wrong with it."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"{path}: cannot read the query file ({e})") from None
    out: list[SpecQuery] = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInputError(f"{where}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise BadInputError(f"{where}: expected an object with text, category and attributes")
        text, category, attributes = row.get("text"), row.get("category"), row.get("attributes", {})
        if not isinstance(text, str) or not text.strip():
            raise BadInputError(f"{where}: 'text' must be a non-empty string")
        if not isinstance(category, str) or not category:
            raise BadInputError(f"{where}: 'category' must be a non-empty string")
        if not isinstance(attributes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
        ):
            raise BadInputError(f"{where}: 'attributes' must map names to string values")
        out.append(SpecQuery(text=text.strip(), category=category, attributes=dict(attributes)))
        if len(out) > MAX_QUERIES:
            raise BadInputError(f"{path}: more than {MAX_QUERIES} queries")
    if not out:
        raise BadInputError(f"{path}: no queries")
    return out


def read_class_prompts(path: str | os.PathLike[str]) -> dict[str, str | list[str]]:
    """The class names of a JSON file; a bad entry is refused with its id and what is wrong with it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"{path}: cannot read the class-names file ({e})") from None
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, dict) or not data:
        raise BadInputError(f"{path}: expected a non-empty object from category id to a name or a list of prompts")
    if len(data) > MAX_CLASSES:
        raise BadInputError(f"{path}: more than {MAX_CLASSES} classes")
    out: dict[str, str | list[str]] = {}
    for cid, value in data.items():
        texts = value if isinstance(value, list) else [value]
        if not texts or not all(isinstance(t, str) and t.strip() and len(t) <= MAX_PROMPT_CHARS for t in texts):
            raise BadInputError(
                f"{path}: {cid!r} must map to a non-empty name or a non-empty list of prompts "
                f"(strings of 1 to {MAX_PROMPT_CHARS} characters)"
            )
        out[cid] = [t.strip() for t in texts] if isinstance(value, list) else value.strip()
    return out

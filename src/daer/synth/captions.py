"""Align3D-Synth captions: per-category phrase banks rendered through train and held-out templates.

A template is a sentence pattern plus two choices: whether attributes that have a prenominal form go
before the noun ("a three-legged chair") or all go into a list after it ("a chair with three legs"), and
the order of that list. Any subset of a category's attributes can be rendered through any template, so
one template gives captions of every granularity ("a stool", "a tall stool", "a tall round 3-legged
stool"). ``variant`` picks synonyms and digits-or-words per attribute with a hash of (variant, category,
attribute) that does not look at the value, so swapping one value and re-rendering the same template and
variant changes only that attribute's phrase (and at most the article just before it).

Train and held-out templates never share a pattern: test captions and spec queries use held-out ones
only, so test scores measure paraphrase generalisation rather than template recall.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from daer.errors import BadInputError
from daer.synth.phrases import PHRASES, CategoryPhrases
from daer.synth.splits import split_table
from daer.synth.taxonomy import CATEGORIES, TAXONOMY, combinations, combo_key

GROUPS: tuple[str, ...] = ("train", "heldout")


@dataclass(frozen=True)
class Template:
    """One caption pattern.

    Attributes:
        bare: pattern used when no attribute goes after the noun; ``{np}`` is the noun phrase.
        full: pattern with ``{np}`` and ``{post}`` (the joined list of post-noun attribute phrases).
        mode: "pre" puts attributes that have a prenominal form before the noun; "post" puts all after.
        order: order of the post-noun list: "fwd" (taxonomy order), "rev" or "rot" (rotated by one).
        join: "and" ("a, b and c") or "comma" ("a, b, c").
    """

    bare: str
    full: str
    mode: str = "post"
    order: str = "fwd"
    join: str = "and"


# {kind} is replaced by the category's super-class word ("furniture", "vehicle", ...).
_TRAIN: tuple[Template, ...] = (
    Template("a {np}", "a {np} with {post}", mode="pre", order="fwd"),
    Template("a {np}", "a {np} with {post}", mode="post", order="fwd"),
    Template("a 3d model of a {np}", "a 3d model of a {np} with {post}", mode="pre", order="rev"),
    Template("a {np}", "a {np} that has {post}", mode="post", order="rev"),
    Template("this is a {np}", "this is a {np} with {post}", mode="pre", order="rot"),
    Template("a {np} shape", "a {np} shape featuring {post}", mode="post", order="rot"),
    Template("a kind of {kind}: a {np}", "a kind of {kind}: a {np} with {post}", mode="pre", order="fwd"),
)
_HELDOUT: tuple[Template, ...] = (
    Template("{np}", "{np}: {post}", mode="post", order="fwd", join="comma"),
    Template("there is a {np}", "there is a {np}, and it has {post}", mode="pre", order="rev"),
    Template("a point cloud of a {np}", "a point cloud of a {np} having {post}", mode="pre", order="rot"),
    Template("looking for a {np}", "looking for a {np} that comes with {post}", mode="post", order="rot"),
    Template(
        "a {np}, which is a kind of {kind}", "a {np} with {post}, which is a kind of {kind}", mode="post", order="rev"
    ),
)
_TEMPLATES: dict[str, tuple[Template, ...]] = {"train": _TRAIN, "heldout": _HELDOUT}

_CLASS_PROMPTS: tuple[str, ...] = (
    "a {name}",
    "a 3d model of a {name}",
    "a point cloud of a {name}",
    "a 3d shape of a {name}",
    "a rendering of a {name}",
    "a cad model of a {name}",
    "a 3d scan of a {name}",
    "a small model of a {name}",
)


@dataclass(frozen=True)
class SpecQuery:
    """A retrieval query naming a category and 0..k attributes; relevant shapes match all of them.

    ``template`` and ``variant`` say how ``text`` was rendered (always from the held-out group).
    """

    text: str
    category: str
    attributes: dict[str, str] = field(default_factory=dict)
    template: int = 0
    variant: int = 0


@dataclass(frozen=True)
class CaptionDraw:
    """One drawn caption and how to re-render it: ``render_caption(category, attributes, template, group,
    variant) == text``. The attribute-accuracy metric swaps one value and re-renders with the same draw."""

    text: str
    attributes: dict[str, str]
    template: int
    group: str
    variant: int


def templates(group: str) -> tuple[Template, ...]:
    """The templates of a group ("train" or "heldout"); every category uses the same patterns."""
    if group not in _TEMPLATES:
        raise BadInputError(f"caption group must be one of {GROUPS}, got {group!r}")
    return _TEMPLATES[group]


def n_templates(group: str) -> int:
    """How many templates a group has."""
    return len(templates(group))


def _check(category: str, attributes: dict[str, str], *, full: bool) -> None:
    if category not in TAXONOMY:
        raise BadInputError(f"unknown Align3D-Synth category {category!r}")
    spec = TAXONOMY[category]
    for name, value in attributes.items():
        if name not in spec:
            raise BadInputError(f"{category} has no attribute {name!r} (has {', '.join(spec)})")
        if value not in spec[name]:
            raise BadInputError(f"{category}.{name} has no value {value!r} (has {', '.join(spec[name])})")
    if full and set(attributes) != set(spec):
        missing = sorted(set(spec) - set(attributes))
        raise BadInputError(f"{category} needs every attribute; missing {', '.join(missing)}")


def _pick(options: tuple[str, ...], variant: int, key: str) -> str:
    # The index depends on (variant, key) only, never on the value, so a value swap keeps the form.
    return options[zlib.crc32(f"{variant}:{key}".encode()) % len(options)]


def _ordered(names: list[str], order: str) -> list[str]:
    if order == "rev":
        return names[::-1]
    if order == "rot":
        return names[1:] + names[:1]
    return names


def _join(items: list[str], how: str) -> str:
    if how == "comma" or len(items) == 1:
        return ", ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _article(word: str) -> str:
    w = word.lower()
    if not w:
        return "a"
    if w.startswith(("one", "uni", "use", "usu", "eu")):
        return "a"
    if w[:1] in "aeio" or (w[:1] == "u") or w.startswith(("8", "11", "18", "hour", "honest")):
        return "an"
    return "a"


def _fix_articles(text: str) -> str:
    tokens = text.split(" ")
    for i in range(len(tokens) - 1):
        if tokens[i] in ("a", "an"):
            tokens[i] = _article(tokens[i + 1])
    return " ".join(tokens)


def render_caption(category: str, attributes: dict[str, str], template: int, group: str, variant: int = 0) -> str:
    """Render one template with the given (sub)set of attributes.

    Args:
        category: an Align3D-Synth category.
        attributes: any subset of the category's attributes (empty gives a category-only caption).
        template: index into ``templates(group)``.
        group: "train" or "heldout".
        variant: picks synonyms and digit/word numbers; same variant, same choices.

    Returns:
        A lowercase English caption.
    """
    tpls = templates(group)
    _check(category, attributes, full=False)
    if not 0 <= template < len(tpls):
        raise BadInputError(f"template {template} out of range for group {group!r} ({len(tpls)} templates)")
    tpl = tpls[template]
    bank: CategoryPhrases = PHRASES[category]
    names = [n for n in TAXONOMY[category] if n in attributes]
    pre: list[str] = []
    noun = _pick(bank.nouns, variant, f"{category}.noun")
    if tpl.mode == "pre":
        if bank.head is not None and bank.head in attributes:
            noun = _pick(bank.attrs[bank.head].head[attributes[bank.head]], variant, f"{category}.{bank.head}.head")
        pre = [n for n in bank.adj_order if n in attributes]
    adjs = [_pick(bank.attrs[n].adj[attributes[n]], variant, f"{category}.{n}.adj") for n in pre]
    used = set(pre) | ({bank.head} if tpl.mode == "pre" and bank.head else set())
    post_names = [n for n in _ordered(list(TAXONOMY[category]), tpl.order) if n in names and n not in used]
    post = [_pick(bank.attrs[n].np[attributes[n]], variant, f"{category}.{n}.np") for n in post_names]
    np_text = " ".join([*adjs, noun])
    if post:
        text = tpl.full.format(np=np_text, post=_join(post, tpl.join), kind=bank.kind)
    else:
        text = tpl.bare.format(np=np_text, kind=bank.kind)
    return _fix_articles(text)


def random_caption(category: str, attributes: dict[str, str], group: str, rng: np.random.Generator) -> str:
    """One caption naming exactly ``attributes``, with a template of ``group`` and a variant drawn from ``rng``."""
    template, variant = int(rng.integers(n_templates(group))), int(rng.integers(1 << 16))
    return render_caption(category, attributes, template, group, variant)


def value_phrases(category: str, attribute: str, value: str) -> tuple[str, ...]:
    """Every phrase (noun-phrase, prenominal and head forms) that can stand for one attribute value."""
    _check(category, {attribute: value}, full=False)
    a = PHRASES[category].attrs[attribute]
    out = list(a.np[value])
    for forms in (a.adj, a.head):
        if forms is not None:
            out.extend(forms[value])
    return tuple(dict.fromkeys(out))


def draw_captions(
    category: str, attributes: dict[str, str], group: str, rng: np.random.Generator, n: int = 3
) -> list[CaptionDraw]:
    """Draw ``n`` captions of mixed granularity for one shape, keeping how each was rendered.

    The first caption names every attribute; the others name a random proper subset, or (at most one
    of them, each with probability 0.2) none, a category-only caption. Templates and variants are drawn
    from ``rng``; duplicate captions are redrawn a few times. Deterministic for the state of ``rng``.
    """
    _check(category, attributes, full=True)
    if n < 1:
        raise BadInputError(f"need at least one caption, got n={n}")
    tpl_count = n_templates(group)
    names = list(TAXONOMY[category])
    out: list[CaptionDraw] = []
    any_bare = False
    for i in range(n):
        if i == 0:
            subset = names
        elif not any_bare and rng.random() < 0.2:
            subset, any_bare = [], True
        else:
            k = int(rng.integers(1, len(names)))
            subset = [names[j] for j in sorted(rng.choice(len(names), size=k, replace=False))]
        attrs = {name: attributes[name] for name in subset}
        for _ in range(6):
            template, variant = int(rng.integers(tpl_count)), int(rng.integers(1 << 16))
            text = render_caption(category, attrs, template, group, variant)
            if all(text != d.text for d in out):
                break
        out.append(CaptionDraw(text, attrs, template, group, variant))
    return out


def captions_for(
    category: str, attributes: dict[str, str], group: str, rng: np.random.Generator, n: int = 3
) -> list[str]:
    """``n`` captions of mixed granularity for one shape; the first names every attribute.

    The texts of ``draw_captions`` (same arguments, same result for the same ``rng`` state).
    """
    return [d.text for d in draw_captions(category, attributes, group, rng, n)]


def spec_queries(seed: int, n_per_category: int, split: str | None = "test") -> list[SpecQuery]:
    """Spec queries rendered from held-out templates only.

    Each query names a category and 0..k of its attributes (k drawn uniformly). Its values come from a
    full combination assigned to ``split`` under ``split_table(seed)``, so at least one combination of
    that split is relevant; ``split=None`` draws from all combinations.

    Args:
        seed: the data set seed (it also fixes the split table).
        n_per_category: queries per category.
        split: "train", "val", "test" or None.
    """
    if n_per_category < 0:
        raise BadInputError(f"n_per_category must be >= 0, got {n_per_category}")
    table = split_table(seed) if split is not None else None
    rng = np.random.default_rng([seed, 0x5EC, 1])
    out: list[SpecQuery] = []
    for category in CATEGORIES:
        pool = [c for c in combinations(category) if table is None or table[combo_key(category, c)] == split]
        if not pool:
            raise BadInputError(f"no {category} combination is in split {split!r}")
        names = list(TAXONOMY[category])
        for _ in range(n_per_category):
            combo = pool[int(rng.integers(len(pool)))]
            k = int(rng.integers(0, len(names) + 1))
            chosen = [names[j] for j in sorted(rng.choice(len(names), size=k, replace=False))]
            attrs = {name: combo[name] for name in chosen}
            template, variant = int(rng.integers(n_templates("heldout"))), int(rng.integers(1 << 16))
            text = render_caption(category, attrs, template, "heldout", variant)
            out.append(SpecQuery(text, category, attrs, template, variant))
    return out


def class_prompts(category: str) -> list[str]:
    """Zero-shot classification prompts naming the category ("a 3d model of a bookshelf", ...)."""
    if category not in TAXONOMY:
        raise BadInputError(f"unknown Align3D-Synth category {category!r}")
    return [_fix_articles(p.format(name=category)) for p in _CLASS_PROMPTS]

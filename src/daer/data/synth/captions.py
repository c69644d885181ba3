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

from daer.data.synth.splits import split_table
from daer.data.synth.taxonomy import CATEGORIES, TAXONOMY, combinations, combo_key
from daer.errors import BadInputError

GROUPS: tuple[str, ...] = ("train", "heldout")

Forms = dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class AttrPhrases:
    """How one attribute's values are said; every value has the same number of variants per form.

    Attributes:
        np: noun phrases for a "with ..." list ("three legs", "no armrests").
        adj: prenominal forms ("three-legged"), or None when some value has no natural one.
        head: forms that replace the category noun ("pickup truck"), or None.
    """

    np: Forms
    adj: Forms | None = None
    head: Forms | None = None


@dataclass(frozen=True)
class CategoryPhrases:
    """The nouns of a category, its super-class word and its attribute phrases."""

    nouns: tuple[str, ...]
    kind: str
    attrs: dict[str, AttrPhrases]
    adj_order: tuple[str, ...] = ()  # natural English order of the prenominal attributes
    head: str | None = None


_A = AttrPhrases
_WORDS = {
    "0": "zero",
    "1": "one",
    "2": "two",
    "3": "three",
    "4": "four",
    "5": "five",
    "6": "six",
    "7": "seven",
    "8": "eight",
}
# fmt: on


def _count(values: tuple[str, ...], adj: str, plural: str) -> AttrPhrases:
    """A counted part in words and digits: "three legs" / "3 legs", "three-legged" / "3-legged"."""
    return _A(
        {v: (f"{_WORDS[v]} {plural}", f"{v} {plural}") for v in values},
        {v: (f"{_WORDS[v]}-{adj}", f"{v}-{adj}") for v in values},
    )


def _yn(yes: tuple[str, ...], no: tuple[str, ...]) -> AttrPhrases:
    return _A({"yes": yes, "no": no})


# fmt: off
PHRASES: dict[str, CategoryPhrases] = {
    "chair": CategoryPhrases(("chair", "dining chair"), "furniture", {
        "legs": _count(("3", "4"), "legged", "legs"),
        "back": _A({"short": ("a short back", "a low backrest"), "tall": ("a tall back", "a high backrest")},
                   {"short": ("short-backed", "low-backed"), "tall": ("tall-backed", "high-backed")}),
        "armrests": _yn(("armrests", "arms"), ("no armrests", "no arms")),
        "leg_shape": _A({"round": ("round legs", "cylindrical legs"),
                         "square": ("square legs", "square-section legs")}),
    }, adj_order=("back", "legs")),
    "stool": CategoryPhrases(("stool",), "furniture", {
        "legs": _count(("3", "4"), "legged", "legs"),
        "seat": _A({"round": ("a round seat", "a circular seat"), "square": ("a square seat", "a square-shaped seat")},
                   {"round": ("round", "round-seated"), "square": ("square", "square-seated")}),
        "height": _A({"low": ("a low seat height", "a short overall height"),
                      "tall": ("a tall seat height", "a tall overall height")},
                     {"low": ("low", "short"), "tall": ("tall", "high")}),
    }, adj_order=("height", "seat", "legs")),
    "table": CategoryPhrases(("table",), "furniture", {
        "legs": _A({"1": ("a single pedestal", "one central pedestal"), "3": ("three legs", "3 legs"),
                    "4": ("four legs", "4 legs")},
                   {"1": ("pedestal", "single-pedestal"), "3": ("three-legged", "3-legged"),
                    "4": ("four-legged", "4-legged")}),
        "top": _A({"round": ("a round top", "a circular tabletop"), "square": ("a square top", "a square tabletop"),
                   "rectangular": ("a rectangular top", "a rectangular tabletop")},
                  {"round": ("round", "circular"), "square": ("square", "square"),
                   "rectangular": ("rectangular", "oblong")}),
        "height": _A({"low": ("a low height", "a coffee-table height"),
                      "tall": ("a tall height", "a dining-table height")},
                     {"low": ("low", "short"), "tall": ("tall", "high")}),
    }, adj_order=("height", "top", "legs")),
    "bench": CategoryPhrases(("bench",), "furniture", {
        "legs": _count(("4", "6"), "legged", "legs"),
        "backrest": _yn(("a backrest", "a back"), ("no backrest", "no back")),
        "length": _A({"short": ("a short seat", "a short span"), "long": ("a long seat", "a long span")},
                     {"short": ("short", "compact"), "long": ("long", "long")}),
    }, adj_order=("length", "legs")),
    "bed": CategoryPhrases(("bed", "bed frame"), "furniture", {
        "headboard": _yn(("a headboard", "a raised headboard"), ("no headboard", "no headboard")),
        "footboard": _yn(("a footboard", "a raised footboard"), ("no footboard", "no footboard")),
        "width": _A({"single": ("a single width", "a narrow single mattress"),
                     "double": ("a double width", "a wide double mattress")},
                    {"single": ("single", "twin-size"), "double": ("double", "full-size")}),
    }, adj_order=("width",)),
    "sofa": CategoryPhrases(("sofa", "couch"), "furniture", {
        "seats": _A({"2": ("two seats", "2 seat cushions"), "3": ("three seats", "3 seat cushions")},
                    {"2": ("two-seater", "2-seat"), "3": ("three-seater", "3-seat")}),
        "armrests": _yn(("armrests", "arms"), ("no armrests", "no arms")),
        "back": _A({"low": ("a low back", "a low backrest"), "high": ("a high back", "a high backrest")},
                   {"low": ("low-backed", "low-back"), "high": ("high-backed", "high-back")}),
    }, adj_order=("back", "seats")),
    "bookshelf": CategoryPhrases(("bookshelf", "bookcase", "shelving unit"), "furniture", {
        "shelves": _count(("2", "3", "4", "5"), "shelf", "shelves"),
        "back_panel": _A({"yes": ("a back panel", "a solid back"), "no": ("no back panel", "an open back")},
                         {"yes": ("closed-back", "back-panelled"), "no": ("open-back", "open-backed")}),
        "width": _A({"narrow": ("a narrow frame", "a narrow width"), "wide": ("a wide frame", "a wide width")},
                    {"narrow": ("narrow", "slim"), "wide": ("wide", "broad")}),
    }, adj_order=("width", "shelves", "back_panel")),
    "cabinet": CategoryPhrases(("cabinet", "dresser"), "furniture", {
        "drawers": _count(("2", "3", "4"), "drawer", "drawers"),
        "legs": _yn(("legs", "feet"), ("no legs", "no feet")),
    }, adj_order=("drawers",)),
    "lamp": CategoryPhrases(("lamp", "light"), "lighting", {
        "shade": _A({"cone": ("a conical shade", "a cone-shaped shade"),
                     "cylinder": ("a cylindrical shade", "a drum shade"),
                     "sphere": ("a spherical shade", "a globe shade")}),
        "base": _A({"round": ("a round base", "a circular base"), "square": ("a square base", "a square-shaped base")}),
        "height": _A({"desk": ("a short desk-sized stand", "a desk height"),
                      "floor": ("a tall floor-standing pole", "a floor height")},
                     {"desk": ("desk", "table"), "floor": ("floor", "standing")}),
    }, adj_order=("height",)),
    "mug": CategoryPhrases(("mug", "cup"), "drinkware", {
        "handle": _yn(("a handle", "a side handle"), ("no handle", "no side handle")),
        "shape": _A({"straight": ("straight sides", "straight walls"), "tapered": ("tapered sides", "tapering walls")},
                    {"straight": ("straight-sided", "straight"), "tapered": ("tapered", "tapering")}),
        "height": _A({"short": ("a short body", "a squat body"), "tall": ("a tall body", "a tall profile")},
                     {"short": ("short", "squat"), "tall": ("tall", "tall")}),
    }, adj_order=("height", "shape")),
    "bowl": CategoryPhrases(("bowl",), "tableware", {
        "depth": _A({"shallow": ("a shallow basin", "shallow sides"), "deep": ("a deep basin", "deep sides")},
                    {"shallow": ("shallow",), "deep": ("deep",)}),
        "foot": _A({"yes": ("a foot", "a foot ring"), "no": ("no foot", "a flat bottom")},
                   {"yes": ("footed", "footed"), "no": ("footless", "flat-bottomed")}),
    }, adj_order=("depth", "foot")),
    "vase": CategoryPhrases(("vase",), "home decor", {
        "body": _A({"round": ("a round body", "a bulbous body"),
                    "cylindrical": ("a cylindrical body", "a tube-shaped body")},
                   {"round": ("round", "round-bodied"), "cylindrical": ("cylindrical", "tube-shaped")}),
        "neck": _A({"narrow": ("a narrow neck", "a thin neck"), "wide": ("a wide neck", "a broad neck")},
                   {"narrow": ("narrow-necked", "thin-necked"), "wide": ("wide-necked", "broad-necked")}),
        "handles": _A({"0": ("no handles", "no side handles"), "2": ("two handles", "2 side handles")},
                      {"0": ("handleless", "handleless"), "2": ("two-handled", "2-handled")}),
    }, adj_order=("body", "neck", "handles")),
    "bottle": CategoryPhrases(("bottle",), "container", {
        "body": _A({"round": ("a round body", "a rounded body"),
                    "square": ("a square body", "a square-sectioned body")},
                   {"round": ("round", "round-bodied"), "square": ("square", "square-bodied")}),
        "neck": _A({"short": ("a short neck", "a stubby neck"), "long": ("a long neck", "a slender long neck")},
                   {"short": ("short-necked",), "long": ("long-necked",)}),
        "cap": _A({"yes": ("a cap", "a screw cap"), "no": ("no cap", "an open mouth")},
                  {"yes": ("capped", "closed"), "no": ("uncapped", "open")}),
    }, adj_order=("cap", "body", "neck")),
    "airplane": CategoryPhrases(("airplane", "plane", "aircraft"), "vehicle", {
        "engines": _A({"2": ("two engines", "2 engines"), "4": ("four engines", "4 engines")},
                      {"2": ("twin-engine", "2-engine"), "4": ("four-engine", "4-engine")}),
        "wings": _A({"straight": ("straight wings", "unswept wings"), "swept": ("swept wings", "swept-back wings")},
                    {"straight": ("straight-wing", "straight-winged"), "swept": ("swept-wing", "swept-winged")}),
        "tail": _A({"conventional": ("a conventional tail", "a standard tail"),
                    "t_tail": ("a t-tail", "a t-shaped tail")},
                   {"conventional": ("conventional-tail", "standard-tail"), "t_tail": ("t-tail", "t-tailed")}),
    }, adj_order=("engines", "wings", "tail")),
    "car": CategoryPhrases(("car", "automobile"), "vehicle", {
        "body": _A({"sedan": ("a sedan body", "a saloon body"), "pickup": ("a pickup body", "a pickup-truck body"),
                    "van": ("a van body", "a boxy van body")},
                   head={"sedan": ("sedan", "sedan car"), "pickup": ("pickup truck", "pickup"), "van": ("van", "van")}),
        "wheels": _count(("4", "6"), "wheeled", "wheels"),
    }, adj_order=("wheels",), head="body"),
    "rocket": CategoryPhrases(("rocket", "space rocket"), "spacecraft", {
        "fins": _A({"3": ("three fins", "3 fins"), "4": ("four fins", "4 fins")},
                   {"3": ("three-finned", "3-fin"), "4": ("four-finned", "4-fin")}),
        "boosters": _A({"0": ("no boosters", "no side boosters"), "2": ("two boosters", "2 side boosters")}),
        "nose": _A({"pointed": ("a pointed nose", "a sharp nose cone"),
                    "round": ("a round nose", "a rounded nose cone")},
                   {"pointed": ("pointed", "sharp-nosed"), "round": ("round-nosed", "blunt-nosed")}),
    }, adj_order=("nose", "fins")),
    "tree": CategoryPhrases(("tree",), "plant", {
        "crown": _A({"cone": ("a conical crown", "a cone-shaped crown"),
                     "sphere": ("a spherical crown", "a round crown")},
                    {"cone": ("cone-crowned", "conical"), "sphere": ("round-crowned", "spherical")}),
        "trunk": _A({"short": ("a short trunk", "a short stem"), "tall": ("a tall trunk", "a long trunk")},
                    {"short": ("short-trunked",), "tall": ("tall-trunked",)}),
    }, adj_order=("crown", "trunk")),
    "house": CategoryPhrases(("house", "home"), "building", {
        "floors": _A({"1": ("one floor", "1 floor", "a single storey"), "2": ("two floors", "2 floors", "two storeys"),
                      "3": ("three floors", "3 floors", "three storeys")},
                     {"1": ("one-storey", "single-storey"), "2": ("two-storey", "2-storey"),
                      "3": ("three-storey", "3-storey")}),
        "roof": _A({"flat": ("a flat roof", "a flat rooftop"), "gabled": ("a gabled roof", "a pitched roof")},
                   {"flat": ("flat-roofed", "flat-roof"), "gabled": ("gable-roofed", "gabled")}),
        "chimney": _yn(("a chimney", "a chimney stack"), ("no chimney", "no chimney stack")),
    }, adj_order=("floors", "roof")),
    "ladder": CategoryPhrases(("ladder",), "climbing equipment", {
        "rungs": _A({v: (f"{_WORDS[v]} rungs", f"{v} rungs", f"{_WORDS[v]} steps") for v in ("4", "5", "6", "7", "8")},
                    {v: (f"{_WORDS[v]}-rung", f"{v}-rung") for v in ("4", "5", "6", "7", "8")}),
        "rails": _A({"parallel": ("parallel rails", "parallel side rails"),
                     "tapered": ("tapered rails", "side rails that taper")},
                    {"parallel": ("parallel-railed", "straight"), "tapered": ("tapered", "tapering")}),
    }, adj_order=("rails", "rungs")),
}
# fmt: on


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

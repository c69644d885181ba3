"""Align3D-Synth phrase banks: how each category and each attribute value is said (synonyms, digits and words)."""

from __future__ import annotations

from dataclasses import dataclass

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

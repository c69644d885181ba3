"""Which caption tokens HAF scores: content words, not articles, fillers, punctuation or word-piece tails.

Every token of a caption used to carry a learned importance, so template words ("a", "with", "that
has") took part of the fine score, and words of unseen phrasings got extrapolated weights. A fixed,
general English list (not one drawn from our templates) keeps the fine score on the words that name
things, counts and properties. Negations and numbers are content: "no armrests", "3 legs".
"""

from __future__ import annotations

import re

# Function words of English and the generic nouns of 3D captions that never name a part or property.
# fmt: off
FUNCTION_WORDS: frozenset[str] = frozenset(
    {
        "a", "an", "the", "this", "that", "these", "those", "it", "its", "it's", "which", "who", "whose", "what",
        "there", "here", "of", "with", "in", "on", "at", "by", "for", "from", "to", "into", "onto", "over", "under",
        "above", "below", "between", "through", "about", "as", "and", "or", "but", "nor", "so", "yet", "also", "plus",
        "both", "either", "each", "every", "some", "any", "all", "is", "are", "was", "were", "be", "been", "being",
        "has", "have", "had", "having", "do", "does", "did", "can", "could", "will", "would", "should", "may", "might",
        "must", "shall", "very", "quite", "rather", "just", "really", "somewhat", "fairly", "pretty", "too", "i", "me",
        "my", "we", "our", "you", "your", "he", "his", "she", "her", "they", "them", "their", "3d", "3-d", "model",
        "models", "object", "objects", "shape", "shapes", "mesh", "meshes", "render", "rendering", "thing", "something",
        "kind", "sort", "type", "version", "style", "shown", "looking", "looks", "look", "like", "made", "image",
        "picture",
    }
)
# fmt: on


# Words that open a new phrase of a description ("a tree | with a conical crown | and a short trunk").
PHRASE_OPENERS: tuple[str, ...] = (
    "with", "without", "and", "or", "but", "plus", "featuring", "including", "having", "has", "that", "which",
    "whose", "where", "while", "of", "on", "in", "for", "to", "at", "under", "above", "below", "from",
)  # fmt: skip
_PHRASE_BREAK = re.compile(r"(?<=[,;:()])\s*|\s+(?=(?:" + "|".join(PHRASE_OPENERS) + r")\b)", re.IGNORECASE)


def split_phrases(text: str) -> list[str]:
    """A description cut into its phrases, at punctuation and before the words of :data:`PHRASE_OPENERS`.

    The pieces keep every character but the whitespace at the cuts, so a word-piece tokenizer splits them
    into the caption's own pieces. A text with no cut is one phrase.
    """
    parts = [p.strip() for p in _PHRASE_BREAK.split(text)]
    return [p for p in parts if p] or [text]


def is_content_word(word: str) -> bool:
    """Whether HAF should score this (whole) word."""
    t = word.lower()
    return any(ch.isalnum() for ch in t) and t not in FUNCTION_WORDS


def content_positions(tokens: list[str]) -> list[int]:
    """Positions of the content words among word-piece ``tokens`` ("##" marks a word's tail).

    A split word is judged whole ("3" + "##d" is "3d", not the number 3) and scored at its first
    piece, whose contextual feature already carries the rest. All positions when none is content.
    """
    keep, i = [], 0
    while i < len(tokens):
        j = i + 1
        while j < len(tokens) and tokens[j].startswith("##"):
            j += 1
        if is_content_word(tokens[i] + "".join(t[2:] for t in tokens[i + 1 : j])):
            keep.append(i)
        i = j
    return keep or list(range(len(tokens)))

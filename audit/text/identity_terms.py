"""Gendered identity terms shared by the text attribution share, the demo corpus and fairness probes.

One list, so that what the demo plants, what attribution measures and what counterfactual probes swap agree.
"""

from __future__ import annotations

import re
from typing import Literal

Gender = Literal["female", "male"]

# Paired first names: index i of one list swaps with index i of the other.
FEMALE_NAMES: tuple[str, ...] = (
    "mary", "emily", "sarah", "anna", "laura", "julia", "karen", "linda", "susan", "helen",
)
MALE_NAMES: tuple[str, ...] = (
    "john", "james", "david", "michael", "robert", "peter", "thomas", "daniel", "paul", "mark",
)

# (female, male) pairs; the first pair that mentions a word decides its swap partner.
GENDER_SWAP_PAIRS: tuple[tuple[str, str], ...] = (
    ("she", "he"),
    ("her", "his"),  # 'her' is read as possessive; the object form 'him' maps back to 'her' below
    ("her", "him"),
    ("hers", "his"),
    ("herself", "himself"),
    ("ms", "mr"),
    ("mrs", "mr"),
    ("miss", "mr"),
    ("madam", "sir"),
    ("woman", "man"),
    ("women", "men"),
    ("lady", "gentleman"),
    ("girl", "boy"),
    ("wife", "husband"),
    ("mother", "father"),
    ("daughter", "son"),
    ("sister", "brother"),
    ("widow", "widower"),
    ("female", "male"),
    *zip(FEMALE_NAMES, MALE_NAMES),
)

FEMALE_TERMS: frozenset[str] = frozenset(f for f, _ in GENDER_SWAP_PAIRS)
MALE_TERMS: frozenset[str] = frozenset(m for _, m in GENDER_SWAP_PAIRS)
GENDERED_TERMS: frozenset[str] = FEMALE_TERMS | MALE_TERMS

# Gender-neutral stand-ins, for probes that neutralise rather than swap.
NEUTRAL_REPLACEMENTS: dict[str, str] = {
    "she": "they", "he": "they", "her": "their", "his": "their", "him": "them", "hers": "theirs",
    "herself": "themself", "himself": "themself", "ms": "mx", "mrs": "mx", "mr": "mx", "miss": "mx",
    "woman": "person", "man": "person", "women": "people", "men": "people", "lady": "person",
    "gentleman": "person", "girl": "child", "boy": "child", "wife": "spouse", "husband": "spouse",
    "mother": "parent", "father": "parent", "daughter": "child", "son": "child",
    "sister": "sibling", "brother": "sibling", "widow": "widowed person", "widower": "widowed person",
    "female": "person", "male": "person",
}


def _build_swap() -> dict[str, str]:
    swap: dict[str, str] = {}
    for female, male in GENDER_SWAP_PAIRS:
        swap.setdefault(female, male)
        swap.setdefault(male, female)
    return swap


SWAP_MAP: dict[str, str] = _build_swap()
_WORD = re.compile(r"[A-Za-z]+")


def normalise_term(word: str) -> str:
    """Lower-case a word and strip surrounding punctuation, the form the term sets use."""
    return word.strip().strip(".,;:!?'\"()[]").lower()


def gender_of_term(word: str) -> Gender | None:
    """'female' or 'male' when the word is a gendered term, else None."""
    w = normalise_term(word)
    if w in FEMALE_TERMS:
        return "female"
    if w in MALE_TERMS:
        return "male"
    return None


def is_gendered(word: str) -> bool:
    """True when the word (any case, surrounding punctuation ignored) is in GENDERED_TERMS."""
    return normalise_term(word) in GENDERED_TERMS


def _match_case(template: str, word: str) -> str:
    if len(template) > 1 and template.isupper():
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def swap_gender(text: str) -> str:
    """Swap every gendered term for its counterpart (she<->he, Ms<->Mr, names...), keeping case."""
    return _WORD.sub(lambda m: _match_case(m.group(0), SWAP_MAP.get(m.group(0).lower(), m.group(0))), text)


def neutralise_gender(text: str) -> str:
    """Replace gendered terms with neutral ones (she->they, wife->spouse); names are left alone."""
    return _WORD.sub(
        lambda m: _match_case(m.group(0), NEUTRAL_REPLACEMENTS.get(m.group(0).lower(), m.group(0))), text
    )

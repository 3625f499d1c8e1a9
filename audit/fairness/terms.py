"""Default identity-term lists of the counterfactual fairness probe: gendered word pairs and names.

Every probe takes its own lists as arguments; these defaults (English, binary gender) are the project's.
"""

from __future__ import annotations

from audit.text.identity_terms import FEMALE_NAMES as _FEMALE_NAMES
from audit.text.identity_terms import GENDER_SWAP_PAIRS
from audit.text.identity_terms import MALE_NAMES as _MALE_NAMES

# The project's single list of gendered terms lives in audit.text.identity_terms (shared with the
# demo corpus and the text attribution share); the probe swaps the same words by default.
DEFAULT_SWAPS: tuple[tuple[str, str], ...] = tuple(
    pair for pair in GENDER_SWAP_PAIRS if pair[0] not in _FEMALE_NAMES and pair[1] not in _MALE_NAMES
)
# (female, male) first names, swapped index by index.
DEFAULT_NAMES: tuple[tuple[str, str], ...] = tuple(zip(_FEMALE_NAMES, _MALE_NAMES))

# Words after which a possessive reading ("her book") is unlikely: the pronoun reading ("saw her
# yesterday", "gave her the key") is taken instead.
NON_NOUN_FOLLOWERS: frozenset[str] = frozenset(
    """a an the this that these those and or but nor so yet if then than as at by for from in into of
    off on onto out over to up down with without about after before again also back here there now
    today tomorrow yesterday tonight too very well away home is was are were be been being am has have
    had do does did will would can could should may might must not never always often once twice all
    both each every some any no more most much many few less least just only even still already later
    soon first last again because while when where why how who whom whose which what""".split()
)


def identity_terms(
    swaps: tuple[tuple[str, str], ...] | list[tuple[str, str]] = DEFAULT_SWAPS,
    names: tuple[tuple[str, str], ...] | list[tuple[str, str]] = DEFAULT_NAMES,
) -> frozenset[str]:
    """All words (lower case) of the given swap pairs and name pairs."""
    return frozenset(w.lower() for pair in (*swaps, *names) for w in pair)

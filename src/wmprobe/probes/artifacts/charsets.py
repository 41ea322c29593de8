"""The character sets of the paper's scenarios: the 20 most frequent characters of each script."""

from __future__ import annotations

#: Chinese: the 20 most frequent characters (simplified).
CHINESE = "的一是不了在人有我他这个们中来上大为和国"
#: Latin: the 20 most frequent letters, upper case, as in the paper.
LATIN = "IEAUTSRNOMCLPDBQGVFH"
#: Hindi (Devanagari): the 20 most frequent symbols, vowel signs and the virama included.
HINDI = (
    "\u093e",  # ा
    "\u0915",  # क
    "\u0947",  # े
    "\u0930",  # र
    "\u0939",  # ह
    "\u0938",  # स
    "\u0928",  # न
    "\u0940",  # ी
    "\u0902",  # ं
    "\u092e",  # म
    "\u093f",  # ि
    "\u094d",  # ्
    "\u0924",  # त
    "\u092a",  # प
    "\u0932",  # ल
    "\u094b",  # ो
    "\u092f",  # य
    "\u0948",  # ै
    "\u092c",  # ब
    "\u0926",  # द
)
#: Numerals: the ten digits.
NUMERALS = "0123456789"

CHARSETS: dict[str, tuple[str, ...]] = {
    "chinese": tuple(CHINESE),
    "latin": tuple(LATIN),
    "hindi": HINDI,
    "numerals": tuple(NUMERALS),
}

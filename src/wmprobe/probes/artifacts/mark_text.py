"""Random strings that real overlaid marks carry: site names, URLs, credits, copyright lines, dates.

Every string comes from the given random stream only, so the same stream gives the same string.
The names are made of syllables (no real person or company is named).
"""

from __future__ import annotations

import numpy as np

_SYLLABLES = [
    "ka",
    "ro",
    "mi",
    "sa",
    "len",
    "tor",
    "vi",
    "an",
    "del",
    "mar",
    "ne",
    "lo",
    "ra",
    "fen",
    "su",
    "bel",
    "os",
    "tin",
    "ga",
    "ri",
    "ve",
    "mon",
    "das",
    "ki",
    "pa",
    "zu",
    "har",
    "col",
    "ber",
    "nim",
    "lu",
    "qua",
    "ste",
    "fo",
]
_AGENCY_WORDS = ("STOCK", "PHOTO", "IMAGES", "PICTURES", "PRESS", "MEDIA", "FOTO", "PREVIEW")
_TLDS = (".com", ".net", ".org", ".de", ".co.uk", ".jp", ".fr", ".ru", ".cn", ".info")
_CJK_MARK = "图片网站版权所有摄影新闻中国视觉素材"


def word(rng: np.random.Generator, syllables: tuple[int, int] = (2, 3)) -> str:
    """A pronounceable made-up word of ``syllables`` (inclusive range) syllables."""
    n = int(rng.integers(syllables[0], syllables[1] + 1))
    return "".join(_SYLLABLES[int(i)] for i in rng.integers(0, len(_SYLLABLES), size=n))


def person(rng: np.random.Generator) -> str:
    """A made-up name: ``Kamiro Delsa`` or ``K. Delsa``."""
    first, last = word(rng).capitalize(), word(rng).capitalize()
    return f"{first[0]}. {last}" if rng.random() < 0.4 else f"{first} {last}"


def site(rng: np.random.Generator) -> str:
    """A made-up site or URL: ``www.kamiro.com``, ``delsa-photo.net``, ``http://rofen.de``."""
    base = word(rng)
    if rng.random() < 0.3:
        base += "-" + str(rng.choice(("photo", "pics", "images", "foto", "art", "gallery")))
    name = base + str(rng.choice(_TLDS))
    prefix = str(rng.choice(("www.", "", "http://www.", "http://")))
    return prefix + name


def credit(rng: np.random.Generator) -> str:
    """A photographer's credit or signature."""
    who = person(rng)
    return str(rng.choice((who, f"Photo: {who}", f"by {who}", f"(c) {who}", f"Foto {who}")))


def copyright_line(rng: np.random.Generator) -> str:
    """A copyright line: ``© 2007 Kamiro Delsa``, ``Copyright 2004 rofen.com``."""
    year = int(rng.integers(1995, 2011))
    who = person(rng) if rng.random() < 0.5 else site(rng).split("//")[-1]
    tail = " All rights reserved." if rng.random() < 0.3 else ""
    mark = str(rng.choice(("©", "(c)", "Copyright", "Copyright ©")))
    return f"{mark} {year} {who}.{tail}" if tail else f"{mark} {year} {who}"


def agency(rng: np.random.Generator) -> str:
    """A stock agency's mark: ``kamirostock``, ``PREVIEW``, ``© rofen IMAGES``."""
    name = word(rng)
    choice = int(rng.integers(0, 4))
    if choice == 0:
        return name + str(rng.choice(("stock", "photo", "images", "pix")))
    if choice == 1:
        return str(rng.choice(_AGENCY_WORDS))
    if choice == 2:
        return f"© {name.capitalize()} {rng.choice(_AGENCY_WORDS)}"
    return f"{name.upper()} {rng.choice(_AGENCY_WORDS)}"


def overlay_words(rng: np.random.Generator) -> tuple[str, str]:
    """Free overlaid text and its font family: Latin words, or CJK characters (ImageNet-W-like)."""
    if rng.random() < 0.5:
        n = int(rng.integers(2, 7))
        return "".join(_CJK_MARK[int(i)] for i in rng.integers(0, len(_CJK_MARK), size=n)), "cjk"
    words = [word(rng, (1, 3)) for _ in range(int(rng.integers(1, 4)))]
    return " ".join(words).title() if rng.random() < 0.5 else " ".join(words), "serif"


def date_stamp(rng: np.random.Generator) -> str:
    """A camera date stamp in a common layout: ``'05 8 12``, ``2004/08/12``, ``12.08.04``."""
    year = int(rng.integers(1995, 2011))
    month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
    layout = int(rng.integers(0, 4))
    if layout == 0:
        return f"'{year % 100:02d} {month} {day}"
    if layout == 1:
        return f"{year}/{month:02d}/{day:02d}"
    if layout == 2:
        return f"{day:02d}.{month:02d}.{year % 100:02d}"
    return f"{month} {day} '{year % 100:02d}"


def caption(rng: np.random.Generator) -> str:
    """A caption line of a few words."""
    n = int(rng.integers(2, 6))
    return " ".join(word(rng, (1, 3)) for _ in range(n)).capitalize()

"""What the benchmark writes: colours, shapes, filler words, names and the other answer vocabularies.

The ``tiny`` vocabulary is what the package's 4.5M-parameter model can learn to answer (3-digit codes, the six
colour names and three shapes of :mod:`awares_train.data.synthetic`, with the same RGB values, and small
counts); the ``rich`` one adds names, phrases and decimals that ANLS and relaxed accuracy give partial credit.
"""

from __future__ import annotations

import random

from awares_train.data.synthetic import COLORS as TINY_COLORS
from awares_train.data.synthetic import SHAPES

__all__ = ["TINY_COLORS", "RICH_COLORS", "SHAPES", "FILLER", "FIRST", "LAST", "PROJECT_A", "PROJECT_B",
           "PRODUCTS", "SERIES", "SIGNS", "SOURCES", "INK", "colors_for", "code", "person", "project",
           "filler_word", "money", "date"]

RICH_COLORS: dict[str, tuple[int, int, int]] = {
    **TINY_COLORS,
    "pink": (231, 84, 160),
    "brown": (140, 86, 45),
    "teal": (23, 150, 150),
}
INK = (25, 25, 25)

FILLER: tuple[str, ...] = tuple(
    """the of and to in a is that for on as with by this be are from at or an which it was not have has
    been their more will all would other its also into these than only can some such there any both each
    report results section data value annual total period review market growth revenue cost service
    customer program support management account board member policy quality system process project
    analysis increase decrease during following further include provided required approved standard
    within between under over after before while since however therefore according general details
    information office public local national regional quarter year month number level rate share
    agreement contract payment balance statement summary schedule terms notice request order delivery
    supply equipment materials operations planning development research training safety compliance""".split()
)
FIRST: tuple[str, ...] = ("Maria", "James", "Aiko", "Omar", "Lena", "Pavel", "Grace", "Tomas", "Nadia", "Victor",
                          "Helen", "Ravi", "Sofia", "Daniel", "Ingrid", "Kofi", "Elena", "Marcus", "Yuki", "Carmen")
LAST: tuple[str, ...] = ("Jensen", "Okafor", "Tanaka", "Haddad", "Novak", "Lindqvist", "Moreau", "Castillo",
                         "Brennan", "Petrov", "Ferreira", "Kowalski", "Nakamura", "Osei", "Schmidt", "Varga",
                         "Delgado", "Whitfield", "Ahmadi", "Larsen")
PROJECT_A: tuple[str, ...] = ("Blue", "Northern", "Silver", "Coastal", "Granite", "Amber", "Harbor", "Summit",
                              "Cedar", "Eastern", "Falcon", "Willow")
PROJECT_B: tuple[str, ...] = ("Harbor Survey", "Grid Upgrade", "Field Study", "Bridge Repair", "Water Project",
                              "Data Audit", "Road Plan", "Energy Review", "Clinic Expansion", "School Program")
PRODUCTS: tuple[str, ...] = ("Copper wire", "Steel bolts", "Pine boards", "Glass panels", "Cement bags",
                             "Paint cans", "Roof tiles", "Cable ties", "Brass hinges", "Floor mats",
                             "Solar cells", "Pipe fittings")
SERIES: tuple[str, ...] = ("North Region", "South Region", "East Region", "West Region", "Online Store",
                           "Retail Stores", "Wholesale", "Exports", "Product Alpha", "Product Beta",
                           "Product Gamma", "Direct Sales", "Partner Sales", "Central Office")
SIGNS: tuple[str, ...] = ("BAKERY", "PHARMACY", "HOTEL", "GARAGE", "LIBRARY", "MARKET", "POST OFFICE", "CAFE",
                          "BOOKSHOP", "TAXI", "FERRY", "MUSEUM", "BANK", "FLORIST", "CINEMA", "DENTIST")
SOURCES: tuple[str, ...] = ("Annual survey", "Board minutes", "Field report", "Audit summary", "Census tables",
                            "Supplier invoice", "Technical annex", "Budget review", "Safety log", "Site visit")

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def colors_for(vocabulary: str) -> dict[str, tuple[int, int, int]]:
    """The colour palette of a vocabulary (``tiny``: the six the embedded model knows)."""
    return dict(TINY_COLORS) if vocabulary == "tiny" else dict(RICH_COLORS)


def code(rng: random.Random, digits: int = 3) -> str:
    """A digit code with no leading zero (so ``"047"`` and ``"47"`` never compete)."""
    return str(rng.randint(10 ** (digits - 1), 10**digits - 1))


def person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def project(rng: random.Random) -> str:
    return f"{rng.choice(PROJECT_A)} {rng.choice(PROJECT_B)}"


def money(rng: random.Random) -> str:
    return f"${rng.randint(120, 98000):,}.{rng.randint(0, 99):02d}"


def date(rng: random.Random) -> str:
    months = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December")
    return f"{rng.randint(1, 28)} {rng.choice(months)} {rng.randint(2015, 2025)}"


def filler_word(rng: random.Random, vocabulary: str) -> str:
    """One filler word: English-looking for ``rich``, a letter string for ``tiny`` (it reads no words)."""
    if vocabulary == "tiny":
        return "".join(rng.choice(_LETTERS) for _ in range(rng.randint(2, 7)))
    return rng.choice(FILLER)

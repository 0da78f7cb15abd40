"""Simulated news headlines for the simulated market (see market_data).

When the simulator makes a price jump it also "reports" it, so the sentiment kind has
text to score offline; between jumps an occasional noise headline (mildly bullish,
mildly bearish or neutral) keeps the feed alive. The text is invented: every message
built from it is labelled `source: "simulated"` by the caller.

Templates are picked with a `random.Random` seeded per symbol, separate from the price
stream, so news is reproducible and adding it did not change any price path.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

Direction = Literal["up", "down", "neutral"]

# Readable names for the usual coins; anything else is called by its base code ("SOL").
COIN_NAMES = {"BTC": "Bitcoin", "ETH": "Ether"}

# Jump sizes (absolute log return) separating the wording tiers: a 0.5% jump "edges",
# a 2% one "jumps", a 6% one "surges". jump_std defaults to 3%, so all tiers occur.
SMALL_JUMP = 0.01
LARGE_JUMP = 0.04

# {name} is the coin's name, {pct} the jump's size in percent (one decimal).
# Every template must score with its direction's sign under the sentiment kind's
# analyzer (VADER + FINANCE_LEXICON); tests/agents/test_sentiment.py checks that.
JUMP_TEMPLATES: dict[Direction, dict[str, tuple[str, ...]]] = {
    "up": {
        "small": (
            "{name} edges higher",
            "{name} gains ground in brief burst of buying",
            "{name} ticks higher as buyers return",
            "{name} rises modestly",
        ),
        "medium": (
            "{name} jumps as buyers step in",
            "{name} rallies on fresh buying",
            "{name} climbs {pct}% in quick move",
            "{name} rebounds as shorts cover",
        ),
        "large": (
            "{name} surges as buyers pile in",
            "{name} soars {pct}% in sudden rally",
            "Bullish traders send {name} soaring",
            "{name} surges {pct}% on heavy inflows",
        ),
    },
    "down": {
        "small": (
            "{name} edges lower",
            "{name} dips as selling picks up",
            "{name} slips lower",
            "{name} ticks lower as buyers step back",
        ),
        "medium": (
            "{name} slides after heavy selling",
            "{name} drops {pct}% as sellers take control",
            "{name} falls in sudden selloff",
            "{name} slumps on outflows",
        ),
        "large": (
            "{name} plunges {pct}% in sharp selloff",
            "{name} crashes as sellers rush for the exits",
            "{name} tumbles amid heavy liquidations",
            "Bearish panic sends {name} sharply lower",
        ),
    },
}

# Between jumps: mostly mild colour, never a big claim.
NOISE_TEMPLATES: dict[Direction, tuple[str, ...]] = {
    "up": (
        "Analysts see steady inflows into {name}",
        "Traders turn optimistic on {name}",
        "{name} holds gains in calm trading",
    ),
    "down": (
        "Traders turn wary on {name} ahead of data",
        "Desks report small outflows from {name}",
        "Traders turn cautious on {name} as momentum fades",
    ),
    "neutral": (
        "{name} trades sideways in a quiet session",
        "{name} volume steady ahead of macro data",
        "Market makers report balanced {name} order books",
    ),
}
NOISE_DIRECTIONS: tuple[Direction, ...] = ("up", "down", "neutral")


def coin_name(symbol: str) -> str:
    """'Bitcoin' for BTC-USD, 'Ether' for ETH-USD, else the base code ('SOL' for SOL-USD)."""
    base = symbol.upper().replace("/", "-").split("-")[0] or symbol.upper()
    return COIN_NAMES.get(base, base)


def jump_tier(log_jump: float) -> str:
    """'small', 'medium' or 'large' by the jump's absolute log size."""
    size = abs(log_jump)
    if size < SMALL_JUMP:
        return "small"
    return "large" if size >= LARGE_JUMP else "medium"


@dataclass(frozen=True)
class Headline:
    text: str
    direction: Direction
    jump: bool


class NewsDesk:
    """Writes one symbol's simulated headlines from its own seeded random stream."""

    def __init__(self, symbol: str, seed: int) -> None:
        self.name = coin_name(symbol)
        # Its own stream (not the price path's), so the prices are as before news existed.
        self.rng = random.Random(f"{seed}:{symbol}:news")

    def jump_headline(self, log_jump: float) -> Headline:
        """A headline for a price jump of `log_jump` (log return), worded by its size and sign."""
        direction: Direction = "up" if log_jump >= 0 else "down"
        template = self.rng.choice(JUMP_TEMPLATES[direction][jump_tier(log_jump)])
        pct = abs(math.expm1(log_jump)) * 100
        return Headline(template.format(name=self.name, pct=f"{pct:.1f}"), direction, True)

    def noise_headline(self, probability: float) -> Headline | None:
        """With `probability`, a between-jumps headline; always draws, so the stream stays aligned."""
        hit = self.rng.random() < probability
        direction = self.rng.choice(NOISE_DIRECTIONS)
        template = self.rng.choice(NOISE_TEMPLATES[direction])
        if not hit:
            return None
        return Headline(template.format(name=self.name), direction, False)

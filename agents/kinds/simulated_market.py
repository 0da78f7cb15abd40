"""A seeded, pure-Python price simulator for the `market_data` kind.

Each symbol follows geometric Brownian motion with two volatility regimes (normal and
high, switching as a Markov chain) and occasional jumps, because plain GBM looks too calm
to exercise analysis and risk code. A bar lasts whatever market time it is given (see
market_time): volatility and drift scale with it as GBM does (the spread of a bar's move
grows with the square root of its length), and the chances of a regime switch and of a
jump are per simulated minute, so a one-second bar is as calm as a second of that market
and the walk's character does not depend on how often the agent steps. Everything comes
from `random.Random`, one stream per symbol seeded from (seed, symbol), so the same seed
always gives the same path and adding a symbol does not change the others.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from agents.validators import MAX_PRICE

# Crypto trades around the clock, so a simulated year is 365 full days.
SECONDS_PER_YEAR = 365 * 24 * 3600
# Sub-steps per bar: the bar's high/low are the extremes of this intra-bar path.
SUBSTEPS = 12
# Rough traded notional per simulated minute; volume is this over price, randomised.
NOTIONAL_PER_MINUTE = 250_000.0
DEFAULT_PRICES = {"BTC-USD": 65_000.0, "ETH-USD": 3_400.0}
FALLBACK_PRICE = 100.0
MIN_PRICE = 1e-8
# The walk stays below the ledger's largest price (a config's starting prices are below
# it too): wild but valid knobs (volatility 20 x 100 over year-long bars) would otherwise
# overflow math.exp and stop the agent, or feed prices no fill can be booked at.
LOG_MAX_PRICE = math.log(MAX_PRICE * 0.999)


def default_price(symbol: str) -> float:
    """Starting price for a symbol the config does not list."""
    return DEFAULT_PRICES.get(symbol.upper(), FALLBACK_PRICE)


def round_price(price: float) -> float:
    """Cents for prices >= 1, five significant digits below (so small coins keep detail).

    Monotone, so rounding never breaks low <= open/close <= high, and never reaches 0.
    """
    if price >= 1:
        return round(price, 2)
    return round(price, 4 - math.floor(math.log10(price)))


def round_sig(value: float, digits: int = 6) -> float:
    """Round a positive quantity to `digits` significant digits."""
    return round(value, digits - 1 - math.floor(math.log10(value)))


@dataclass(frozen=True)
class MarketParams:
    """The simulator's knobs; rates are annual, probabilities are per simulated minute."""

    annual_volatility: float = 0.6
    drift: float = 0.0
    high_vol_multiplier: float = 3.0
    regime_switch_probability: float = 0.01
    jump_probability: float = 0.002
    jump_std: float = 0.03


def per_bar(probability_per_minute: float, seconds: float) -> float:
    """The chance of at least one event in `seconds`, from the chance in a minute."""
    if probability_per_minute >= 1:
        return 1.0
    return 1.0 - (1.0 - probability_per_minute) ** (seconds / 60.0)


class SymbolPath:
    """One symbol's price, regime and random stream; `next_bar()` advances one bar."""

    def __init__(
        self, symbol: str, price: float, seed: int, params: MarketParams, high: bool = False
    ) -> None:
        self.symbol = symbol
        self.price = min(max(price, MIN_PRICE), math.exp(LOG_MAX_PRICE))
        self.high = high
        self.params = params
        # The log size of the last bar's jump (0.0 without one), for simulated news.
        self.last_jump = 0.0
        # A string seed is hashed with SHA-512 by `random`, so it is stable across runs.
        self.rng = random.Random(f"{seed}:{symbol}")

    def next_bar(self, seconds: float = 60.0) -> dict[str, Any]:
        """Simulate one bar lasting `seconds` of market time and return its OHLCV fields
        plus regime and jump flags."""
        p, rng = self.params, self.rng
        if rng.random() < per_bar(p.regime_switch_probability, seconds):
            self.high = not self.high
        sigma = p.annual_volatility * (p.high_vol_multiplier if self.high else 1.0)
        dt = seconds / SECONDS_PER_YEAR / SUBSTEPS
        drift_term = (p.drift - 0.5 * sigma * sigma) * dt
        diffusion = sigma * math.sqrt(dt)
        jump = rng.random() < per_bar(p.jump_probability, seconds)
        jump_at = rng.randrange(SUBSTEPS) if jump else -1
        self.last_jump = 0.0

        log_open = math.log(self.price)
        log_price = high = low = log_open
        for i in range(SUBSTEPS):
            log_price += drift_term + diffusion * rng.gauss(0.0, 1.0)
            if i == jump_at:
                self.last_jump = rng.gauss(0.0, p.jump_std)
                log_price += self.last_jump
            log_price = min(log_price, LOG_MAX_PRICE)
            high, low = max(high, log_price), min(low, log_price)

        opened, closed = self.price, max(math.exp(log_price), MIN_PRICE)
        self.price = closed
        # Busier when moving and in the high-volatility regime, like real tape.
        activity = (1.0 + 50.0 * abs(log_price - log_open)) * (2.0 if self.high else 1.0)
        notional = NOTIONAL_PER_MINUTE * seconds / 60.0 * activity * rng.lognormvariate(0.0, 0.6)
        return {
            "open": round_price(opened),
            "high": round_price(max(math.exp(high), opened, closed)),
            "low": round_price(max(min(math.exp(low), opened, closed), MIN_PRICE)),
            "close": round_price(closed),
            "volume": round_sig(max(notional / closed, 1e-12)),
            "regime": "high" if self.high else "normal",
            "jump": jump,
        }

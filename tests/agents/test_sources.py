"""The labels that say where prices come from (agents.kinds.sources), for each source."""

from __future__ import annotations

import pytest

from agents.kinds.sources import accelerated, config_label, join_labels, message_label, source_label


@pytest.mark.parametrize(
    ("config", "label"),
    [
        ({}, "Simulated"),
        ({"source": "simulated"}, "Simulated"),
        ({"source": "simulated", "speed": 1.0}, "Simulated"),
        ({"source": "simulated", "speed": 60.0}, "Simulated, 60x"),
        ({"source": "simulated", "speed": 2.5}, "Simulated, 2.5x"),
        ({"source": "csv", "csv_path": "history/btc-2024.csv"}, "Replay: btc-2024.csv"),
        ({"source": "csv", "csv_path": "/data/market/eth.csv"}, "Replay: eth.csv"),
        ({"source": "exchange", "exchange": "binance"}, "Live: Binance"),
        ({"source": "exchange", "exchange": "kraken", "exchange_name": "Kraken"}, "Live: Kraken"),
        (
            {"source": "exchange", "exchange": "coinbase", "exchange_name": "Coinbase Exchange"},
            "Live: Coinbase Exchange",
        ),
        ({"source": "exchange"}, "Live"),
        # Without a name in the message, ccxt's own name of the exchange, not a guess.
        ({"source": "exchange", "exchange": "coinbase"}, "Live: Coinbase Advanced"),
        ({"source": "exchange", "exchange": "BitStamp"}, "Live: Bitstamp"),
    ],
)
def test_config_labels(config: dict, label: str) -> None:
    assert config_label(config) == label


@pytest.mark.parametrize(
    ("message", "label"),
    [
        ({"type": "bar", "source": "simulated", "speed": 1.0}, "Simulated"),
        ({"type": "bar", "source": "simulated"}, "Simulated"),  # before speed existed
        ({"type": "signal", "source": "simulated", "speed": 60}, "Simulated, 60x"),
        ({"type": "bar", "source": "csv:btc.csv"}, "Replay: btc.csv"),
        ({"type": "bar", "source": "exchange", "exchange": "bitstamp"}, "Live: Bitstamp"),
        (
            {"type": "bar", "source": "exchange", "exchange": "binance", "exchange_name": "Binance"},
            "Live: Binance",
        ),
        ({"type": "bar"}, "Unknown source"),
        ({"type": "bar", "source": "somewhere"}, "somewhere"),
    ],
)
def test_message_labels(message: dict, label: str) -> None:
    assert message_label(message) == label


@pytest.mark.parametrize("speed", [None, 1, 1.0, 0.5, True, "60", float("nan"), float("inf")])
def test_only_a_finite_speed_above_one_is_an_acceleration(speed: object) -> None:
    assert source_label("simulated", speed=speed) == "Simulated"
    assert not accelerated({"speed": speed})


def test_an_accelerated_message_is_known_as_such() -> None:
    assert accelerated({"source": "simulated", "speed": 60})


def test_labels_join_once_each_in_a_stable_order() -> None:
    labels = ["Simulated, 60x", "Live: Binance", "Simulated, 60x"]
    assert join_labels(labels) == "Live: Binance; Simulated, 60x"
    assert join_labels([]) == ""

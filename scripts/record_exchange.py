"""Re-record the exchange fixtures of the tests from Binance's real public API.

    .venv/bin/python scripts/record_exchange.py            # BTCUSDT and ETHUSDT, 240 1m candles
    .venv/bin/python scripts/record_exchange.py --limit 500

Needs network access to api.binance.com (no API key: public endpoints only). Writes, in
tests/fixtures/exchange/binance/, Binance's answers as they came, through ccxt's own
raw endpoint methods and agents.net.fetch (the same path the agents use):

* exchangeInfo.json: GET /api/v3/exchangeInfo, its `symbols` cut down to the markets the
  tests name (the whole list is megabytes);
* klines_<SYMBOL>_1m.json: GET /api/v3/klines for each symbol, the newest `--limit`
  one-minute candles.

tests/exchange_server.py serves them; it re-stamps the candles to the present, so a
recording of any date works. The tests never run this: they must not reach the internet.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "exchange" / "binance"
# The markets the tests and their refusal sentences rely on (tests/agents/test_exchange_source.py).
MARKETS = ["BTCUSDT", "ETHUSDT", "BTCUSDC", "ETHBTC", "BTCEUR", "SOLUSDT", "BTCFDUSD", "ETHUSDC"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT", help="Binance symbols to record candles of")
    parser.add_argument("--limit", type=int, default=240, help="one-minute candles per symbol (max 1000)")
    parser.add_argument("--out", type=Path, default=OUT, help="folder to write into")
    parser.add_argument(
        "--base-url", default=None, help="a gateway or proxy in front of Binance (default: Binance itself)"
    )
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
    import ccxt
    import django

    django.setup()
    from agents.kinds.exchange_client import make_exchange

    exchange = make_exchange("binance", args.base_url)
    try:
        info = exchange.publicGetExchangeInfo()
        info["symbols"] = [s for s in info["symbols"] if s["symbol"] in MARKETS]
        candles = {
            symbol: exchange.publicGetKlines({"symbol": symbol, "interval": "1m", "limit": args.limit})
            for symbol in args.symbols.split(",")
        }
    except ccxt.BaseError as exc:
        print(f"Binance could not be reached ({exc}); nothing was written.", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "exchangeInfo.json").write_text(json.dumps(info, indent=1) + "\n")
    for symbol, rows in candles.items():
        (args.out / f"klines_{symbol}_1m.json").write_text(json.dumps(rows) + "\n")
    print(f"recorded {len(info['symbols'])} markets and {len(candles)} candle series into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Paper trading sessions arrive with the trading engine (issue 3)."""

"""kwartier: dynamic quarter-hour electricity tariffs for local energy communities."""

__version__ = "0.1.0"

"""ami-gateway: reads smart meters, validates and de-rollovers readings, stores interval
data and feeds the customer portal."""

__version__ = "0.1.0"

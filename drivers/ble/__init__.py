"""BLE fitness sensors: pure GATT parsers (``gatt``), UUIDs, and errors.

Only the connection module (written separately) imports bleak; everything
re-exported here is pure and testable without a radio.
"""

from drivers.ble.errors import GattError, MeasurementFailed
from drivers.ble.gatt import *  # noqa: F403 - the parser API, listed in gatt.__all__
from drivers.ble.gatt import __all__ as _gatt_all

__all__ = ["GattError", "MeasurementFailed", *_gatt_all]

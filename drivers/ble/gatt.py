"""The GATT parsers, one function per characteristic: bytes in, a frozen dataclass out.

Units are SI whatever the wire format (kJ -> J, km/h -> m/s, 1/1024 s -> s,
lb -> kg). A packet that does not decode raises ``drivers.ble.errors.GattError``
naming the characteristic and the defect, and nothing else. The parsers are
pure; the profiles live in one module each and are gathered here.
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.ble import uuids
from drivers.ble.gatt_cycling import (
    CscCalculator,
    CscMeasurement,
    CyclingPower,
    CyclingPowerCalculator,
    CyclingRates,
    parse_csc,
    parse_cycling_power,
)
from drivers.ble.gatt_ftms import IndoorBike, Treadmill, parse_indoor_bike, parse_treadmill
from drivers.ble.gatt_heart import HeartRate, parse_battery, parse_heart_rate
from drivers.ble.gatt_rates import RevolutionRate
from drivers.ble.gatt_running import Rsc, parse_rsc
from drivers.ble.gatt_scale import (
    BodyComposition,
    BodyCompositionAssembler,
    Weight,
    parse_body_composition,
    parse_weight,
)

# The stateless parser for each characteristic fithub subscribes to. Body
# composition is listed for single packets; a session should route it through a
# BodyCompositionAssembler so that two-packet measurements are joined.
PARSERS: dict[str, Callable[[bytes], object]] = {
    uuids.HEART_RATE_MEASUREMENT: parse_heart_rate,
    uuids.CSC_MEASUREMENT: parse_csc,
    uuids.CYCLING_POWER_MEASUREMENT: parse_cycling_power,
    uuids.RSC_MEASUREMENT: parse_rsc,
    uuids.INDOOR_BIKE_DATA: parse_indoor_bike,
    uuids.TREADMILL_DATA: parse_treadmill,
    uuids.WEIGHT_MEASUREMENT: parse_weight,
    uuids.BODY_COMPOSITION_MEASUREMENT: parse_body_composition,
    uuids.BATTERY_LEVEL: parse_battery,
}

__all__ = [
    "PARSERS",
    "BodyComposition",
    "BodyCompositionAssembler",
    "CscCalculator",
    "CscMeasurement",
    "CyclingPower",
    "CyclingPowerCalculator",
    "CyclingRates",
    "HeartRate",
    "IndoorBike",
    "RevolutionRate",
    "Rsc",
    "Treadmill",
    "Weight",
    "parse_battery",
    "parse_body_composition",
    "parse_csc",
    "parse_cycling_power",
    "parse_heart_rate",
    "parse_indoor_bike",
    "parse_rsc",
    "parse_treadmill",
    "parse_weight",
]

"""Bluetooth SIG UUIDs of the fitness services and characteristics fithub reads.

Written as the full 128-bit lower-case strings bleak reports and accepts, so a
configured ``service = "heart_rate"`` or a scan result can be compared directly.
16-bit assigned numbers expand on the Bluetooth base UUID.
"""

from __future__ import annotations

_BASE = "-0000-1000-8000-00805f9b34fb"


def uuid16(number: int) -> str:
    """The 128-bit form of a 16-bit SIG assigned number (0x180D -> '0000180d-...')."""
    if not 0 <= number <= 0xFFFF:
        raise ValueError(f"not a 16-bit assigned number: {number:#x}")
    return f"0000{number:04x}{_BASE}"


def short(uuid: str) -> int | None:
    """The 16-bit assigned number inside a SIG UUID, None for a vendor UUID."""
    u = uuid.lower()
    if len(u) == 36 and u.startswith("0000") and u.endswith(_BASE):
        return int(u[4:8], 16)
    return None


# Services.
GENERIC_ACCESS_SERVICE = uuid16(0x1800)
DEVICE_INFORMATION_SERVICE = uuid16(0x180A)
HEART_RATE_SERVICE = uuid16(0x180D)
BATTERY_SERVICE = uuid16(0x180F)
RSC_SERVICE = uuid16(0x1814)  # Running Speed and Cadence (footpods)
CSC_SERVICE = uuid16(0x1816)  # Cycling Speed and Cadence
CYCLING_POWER_SERVICE = uuid16(0x1818)
BODY_COMPOSITION_SERVICE = uuid16(0x181B)
USER_DATA_SERVICE = uuid16(0x181C)
WEIGHT_SCALE_SERVICE = uuid16(0x181D)
FITNESS_MACHINE_SERVICE = uuid16(0x1826)  # FTMS: trainers, treadmills

# Characteristics.
DEVICE_NAME = uuid16(0x2A00)
BATTERY_LEVEL = uuid16(0x2A19)
MODEL_NUMBER_STRING = uuid16(0x2A24)
SERIAL_NUMBER_STRING = uuid16(0x2A25)
FIRMWARE_REVISION_STRING = uuid16(0x2A26)
MANUFACTURER_NAME_STRING = uuid16(0x2A29)
HEART_RATE_MEASUREMENT = uuid16(0x2A37)
BODY_SENSOR_LOCATION = uuid16(0x2A38)
HEART_RATE_CONTROL_POINT = uuid16(0x2A39)
RSC_MEASUREMENT = uuid16(0x2A53)
RSC_FEATURE = uuid16(0x2A54)
SC_CONTROL_POINT = uuid16(0x2A55)
CSC_MEASUREMENT = uuid16(0x2A5B)
CSC_FEATURE = uuid16(0x2A5C)
SENSOR_LOCATION = uuid16(0x2A5D)
CYCLING_POWER_MEASUREMENT = uuid16(0x2A63)
CYCLING_POWER_VECTOR = uuid16(0x2A64)
CYCLING_POWER_FEATURE = uuid16(0x2A65)
CYCLING_POWER_CONTROL_POINT = uuid16(0x2A66)
BODY_COMPOSITION_FEATURE = uuid16(0x2A9B)
BODY_COMPOSITION_MEASUREMENT = uuid16(0x2A9C)
WEIGHT_MEASUREMENT = uuid16(0x2A9D)
WEIGHT_SCALE_FEATURE = uuid16(0x2A9E)
USER_INDEX = uuid16(0x2A9A)
FITNESS_MACHINE_FEATURE = uuid16(0x2ACC)
TREADMILL_DATA = uuid16(0x2ACD)
CROSS_TRAINER_DATA = uuid16(0x2ACE)
STEP_CLIMBER_DATA = uuid16(0x2ACF)
STAIR_CLIMBER_DATA = uuid16(0x2AD0)
ROWER_DATA = uuid16(0x2AD1)
INDOOR_BIKE_DATA = uuid16(0x2AD2)
TRAINING_STATUS = uuid16(0x2AD3)
SUPPORTED_SPEED_RANGE = uuid16(0x2AD4)
SUPPORTED_INCLINATION_RANGE = uuid16(0x2AD5)
SUPPORTED_RESISTANCE_LEVEL_RANGE = uuid16(0x2AD6)
SUPPORTED_POWER_RANGE = uuid16(0x2AD8)
FITNESS_MACHINE_CONTROL_POINT = uuid16(0x2AD9)
FITNESS_MACHINE_STATUS = uuid16(0x2ADA)

# The fitness services by a short name, for configuration (`service = "cycling_power"`)
# and for `fithub ble scan` to say what a device offers.
FITNESS_SERVICES: dict[str, str] = {
    "heart_rate": HEART_RATE_SERVICE,
    "cycling_speed_cadence": CSC_SERVICE,
    "cycling_power": CYCLING_POWER_SERVICE,
    "running_speed_cadence": RSC_SERVICE,
    "fitness_machine": FITNESS_MACHINE_SERVICE,
    "weight_scale": WEIGHT_SCALE_SERVICE,
    "body_composition": BODY_COMPOSITION_SERVICE,
}
SERVICE_NAMES: dict[str, str] = {uuid: name for name, uuid in FITNESS_SERVICES.items()} | {
    BATTERY_SERVICE: "battery",
    DEVICE_INFORMATION_SERVICE: "device_information",
    USER_DATA_SERVICE: "user_data",
}

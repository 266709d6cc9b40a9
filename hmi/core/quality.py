"""Sample quality, ordered from best to worst so that `max()` of two is the worse one."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Quality(IntEnum):
    GOOD = 0
    UNCERTAIN = 1
    BAD = 2
    # The source is gone (connection lost, device offline): the value shown is the last
    # one received and must never look current.
    COMM_LOST = 3


QUALITY_DTYPE = np.uint8

# OPC UA status codes (Part 4, 7.34) that mean "no communication" rather than "bad value".
_OPCUA_COMM_CODES = frozenset(
    {
        0x80050000,  # BadCommunicationError
        0x800D0000,  # BadServerNotConnected
        0x80310000,  # BadNoCommunication
        0x808A0000,  # BadNotConnected
        0x80AE0000,  # BadConnectionClosed
        0x80860000,  # BadSecureChannelClosed
        0x800A0000,  # BadTimeout
        0x808D0000,  # BadOutOfService
        0x808B0000,  # BadDeviceFailure: the data source itself stopped delivering
    }
)


def quality_from_opcua_status(code: int) -> Quality:
    """Map an OPC UA StatusCode value to our Quality by its severity bits."""
    severity = (code >> 30) & 0b11
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    if (code & 0xFFFF0000) in _OPCUA_COMM_CODES:
        return Quality.COMM_LOST
    return Quality.BAD

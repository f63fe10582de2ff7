"""Modbus: pure planning, decoding and RTU framing; a pymodbus adapter (TCP), an RTU
bus (serial port or device server), and the driver over either."""

from gateway.drivers.modbus.driver import ModbusDriver, ModbusTcpDriver
from gateway.drivers.modbus.plan import ReadBlock, SerialLink, TcpLink, plan_reads

__all__ = ["ModbusDriver", "ModbusTcpDriver", "ReadBlock", "SerialLink", "TcpLink", "plan_reads"]

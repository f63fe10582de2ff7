"""Modbus: pure planning and decoding, a pymodbus adapter, and the TCP driver."""

from gateway.drivers.modbus.driver import ModbusTcpDriver
from gateway.drivers.modbus.plan import ReadBlock, SerialLink, TcpLink, plan_reads

__all__ = ["ModbusTcpDriver", "ReadBlock", "SerialLink", "TcpLink", "plan_reads"]

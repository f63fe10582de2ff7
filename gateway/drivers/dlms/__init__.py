"""DLMS/COSEM meters over HDLC (serial: RS-485 or the optical probe) and the TCP wrapper.

The protocol core is the project's own and sans-IO (bytes in, events out; no sockets,
no serial, no clock): dlms-cosem 24.x/25.x ship under the Business Source License and
gurux-dlms under GPL-2.0, and the last MIT dlms-cosem (21.3.2) is synchronous and
client-only, while the simulator needs the server side of every layer too.

Layers, bottom up (each module owns one, and each has a client and a server side):

- ``hdlc``: IEC 62056-46 HDLC frame format type 3 (flags, format, addresses, control,
  HCS/FCS), SNRM/UA parameter negotiation (information field length, window), I-frame
  segmentation and sequence numbers, the LLC header; ``HdlcClient`` / ``HdlcServer``.
- ``wrapper``: the IEC 62056-47 TCP/UDP wrapper (port 4059).
- ``mode_e``: the IEC 62056-21 mode E sign-on of an optical probe (300 baud, then HDLC).
- ``axdr``: A-XDR ``Data`` (the COSEM data types), exact and round-tripping.
- ``cosem``: OBIS codes, COSEM date-time, scaler/unit and the unit table, status words.
- ``apdu``: ACSE (AARQ/AARE/RLRQ/RLRE, BER) and xDLMS APDUs (Initiate, GET normal/next/
  with-datablock and selective access, ACTION, exception and service errors).
- ``security``: security suite 0 (AES-GCM-128): glo-ciphered APDUs, HLS-GMAC, LLS,
  invocation counters that only rise.
- ``session``: a client association over the layers above; ``transport`` the async
  shells (serial, optical, TCP); ``driver`` the polled driver with load profile catch-up.
"""

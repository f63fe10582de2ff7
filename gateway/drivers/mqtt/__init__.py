"""MQTT meter input: payload codecs as pure functions of (topic, payload bytes, time).

Nothing here talks to a broker. ``topics`` matches MQTT topic filters with named
placeholders, ``json_paths`` parses payloads strictly (exact decimals, no NaN,
bounded size) and walks dotted paths, ``values`` turns JSON values into numbers,
identities and instants, ``config`` holds the validated options of each codec and
``codecs`` the codecs themselves (generic JSON mapping, Tasmota SML, Shelly Gen2+ EM).

A payload a codec cannot use raises :class:`gateway.errors.DataError` with a reason
that names the field, so the caller can quarantine it; it is never dropped silently.
"""

"""The edge uplink over MQTT: the versioned payload schema (``schema``, pure) shared by
the edge's uplink sink (``gateway.sinks.mqtt_uplink``) and the central ingest."""

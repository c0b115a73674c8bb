"""Integration tests: a real server process and real MQTT clients."""

"""Benchmarks that run pushwire side by side with a reference broker on the same machine.

`pushwire bench mqtt` (module `pushwire.bench.mqtt`) drives the MQTT scenarios; the load
generator lives in `loadgen` and the server subprocesses in `peers`. See bench/README.md.
"""

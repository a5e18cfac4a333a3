"""ESPnet tasks that know our models (built from YAML by ``python -m espnet_otreg.bin.*``)."""

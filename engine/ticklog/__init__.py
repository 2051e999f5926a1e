"""Tick logs: the MCAP record schema, writer, reader, recorder, replay."""

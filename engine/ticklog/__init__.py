"""Tick logs: records and schema, writer, reader (and its record scan), recorder, replay."""

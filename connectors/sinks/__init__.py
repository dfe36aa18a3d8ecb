"""Sinks: event consumers that write fithub's data somewhere else (a folder for a
sync app, ...). Like notifiers they are fed by the outbox (:mod:`hub.outbox`), at
least once and in order per person, so writing must be idempotent: the same event
twice leaves the same result.
"""

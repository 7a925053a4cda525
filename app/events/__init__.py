"""Outbound events to the merchant's systems: recorded by the state writers in their own transaction
(`outbox.py`), delivered signed per Standard Webhooks by the dispatcher (`dispatcher.py`), read and
replayed by operators (`routes.py`), who can also replay stored provider webhooks."""

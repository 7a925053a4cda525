"""Fintecture: the PIS v2 API, OAuth tokens, request signatures, the hosted Connect page and RSA
webhooks, on the simulator's shared core."""

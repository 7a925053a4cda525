"""The operator console at /admin: server-rendered pages over the same services as the operator API."""

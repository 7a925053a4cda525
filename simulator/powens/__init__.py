"""Powens Pay: the payments API under `/powens/2.0`, the hosted webview with the test connector's
label grammar, and HMAC-signed `PAYMENT_STATE_UPDATED` webhooks, on the simulator's shared core."""

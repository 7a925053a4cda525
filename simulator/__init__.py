"""Offline stand-ins for the payment providers the checkout service uses, for tests and demos.

A shared core (clock, scheduler, request log, webhook dispatcher with retries, faults, the `/_sim`
control API, config) and one package per provider: `simulator.fintecture` (PIS API, hosted Connect
page, RSA-signed webhooks) and `simulator.powens` (Pay API under `/powens/2.0`, hosted webview,
HMAC-signed webhooks). `simulator.app.create_app(SimulatorConfig(...))` builds the ASGI app
serving all of them; `simulator.runner` runs it standalone. The checkout service never imports
this package, and this package never imports it.
"""

"""A stand-in for Fintecture's PIS API, hosted Connect page and webhooks, for tests and demos.

`simulator.app.create_app(SimulatorConfig(...))` builds the ASGI app; `simulator.runner` runs it
standalone. The checkout service never imports this package, and this package never imports it.
"""

"""A faithful stand-in for the Webex Calling CDR API, for the demo, the tests and the benchmarks.

``generator`` makes deterministic traffic (pure), ``faults`` decides what goes wrong, ``server``
serves it over HTTP: ``from publisher.simulator.server import Simulator, SimulatorConfig``.
"""

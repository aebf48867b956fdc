"""Steering: plan batteries, EVs, heat pumps and appliances against quarter-hour prices, and explain why.

- :mod:`kwartier.steer.devices`: the device TOML file (pydantic models, ``load_devices``);
- :mod:`kwartier.steer.problem`: the problem as arrays (prices, horizon, windows) and exact accounting;
- :mod:`kwartier.steer.constraints`: one model builder per concern (balance, limits, SOC, comfort, ...);
- :mod:`kwartier.steer.optimize`: the HiGHS plan (``optimise``), exact costs, named violations;
- :mod:`kwartier.steer.baselines`: no steering, greedy cheapest slots (perfect = the optimiser);
- :mod:`kwartier.steer.explain`: a reason per action in nl/en/fr (``reason_text``);
- :mod:`kwartier.steer.coordinate`: many households under one feeder limit via congestion prices.

Nothing is imported here, so the dispatch modules (MQTT, S2) load without the solver.
"""

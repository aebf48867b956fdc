"""Tariff plans: the plan schema, safe price expressions, composition per quarter-hour, costs."""

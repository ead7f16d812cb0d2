"""Serving: the production model held in memory, batch prediction."""

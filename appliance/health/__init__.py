"""Liveness, readiness and start-up probes, and the warm-up that gates start-up."""

"""Classifying documents: taxonomy, prompt, vLLM call, scoring, storage, HTTP views."""

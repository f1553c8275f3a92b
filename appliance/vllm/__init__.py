"""Client for the in-cluster vLLM server's OpenAI-compatible API."""

"""The only place the HTTP API touches the audit log library (``audit/``)."""

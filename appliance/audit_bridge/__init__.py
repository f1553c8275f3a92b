"""The only place the HTTP API touches the audit log library (``audit/``).

``interfaces``: actions, events and the sink protocol; ``recorder``: the one place events are
built; ``declare``: which operation each view performs; ``hooks``: the request hook that audits
what no service recorded; ``services`` and ``views``: the PostgreSQL sink and the auditors'
endpoints.
"""

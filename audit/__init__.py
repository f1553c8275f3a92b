"""Tamper-evident audit log: hash chain, RFC 6962 Merkle tree, signed checkpoints.

This package needs neither Flask nor the appliance: the sealer, the auditors' CLI (``audit-tool``)
and offline verification of an export file all run from here. See docs/auditors.md.
"""

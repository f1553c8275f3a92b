"""Bulk classification jobs: submitted once over the API, processed by ``appliance worker``."""

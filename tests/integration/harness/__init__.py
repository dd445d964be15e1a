"""Helpers of the integration-test harness: processes, broker, object stores,
the signed API client, test data and the checker of dumped objects.

The pytest fixtures that wire these together live in ../conftest.py.
"""

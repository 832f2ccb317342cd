"""Shared pytest configuration: the server fixtures live in their own plugin modules."""

pytest_plugins = ["redis_fixtures", "dynamodb_fixtures", "reliability_fixtures", "backend_fixtures"]

"""Fixtures for the reliability and security suite (servers with persistence, proxies, ACLs)."""

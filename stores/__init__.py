"""Event store drivers: ``keyvalue`` (the shared base), ``memory``, ``redis``, ``dynamodb``."""

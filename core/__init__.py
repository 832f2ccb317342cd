"""kvsourcing: event sourcing on key-value stores."""

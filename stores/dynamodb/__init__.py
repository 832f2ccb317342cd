"""dynamodb driver."""

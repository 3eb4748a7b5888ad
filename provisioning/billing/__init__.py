"""Plans, subscriptions and seats (R7, R8, SPEC section 7)."""

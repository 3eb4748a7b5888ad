"""Who is asking and what they may do: sessions, API keys and the permission policy (R1)."""

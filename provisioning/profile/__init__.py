"""A person's own profile, two-factor sign-in and notification settings (R12, R13). Not built
yet.
"""

"""Members of an account: the member rules, inviting, invitations, listing and reading (R2-R5,
R11).
"""

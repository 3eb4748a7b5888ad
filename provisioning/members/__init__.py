"""Members of an account: the member rules, inviting, invitations, listing and reading (R2-R5,
R11).
"""

# The search keys follow every ORM write of any process that loads a member module.
from provisioning.members import search as search  # noqa: E402

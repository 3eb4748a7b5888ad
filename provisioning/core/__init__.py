"""What every capability stands on: settings, the database, SQL bulk helpers, errors, pages,
validation primitives, secrets, the audit trail and the port to the workers.
"""

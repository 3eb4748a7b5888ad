"""Workspaces: creating one with its built-in roles and groups, custom roles, groups, the audit
log.
"""

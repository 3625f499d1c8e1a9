"""Who may do what, and the record of it: principals and permissions, users and sign-in, sessions, single
sign-on identities, settings, sign-in throttling, backups and the audit trail."""

"""Persistence for the workbench: SQLAlchemy ORM, repositories, migrations and the artifact store.

Repositories take a session and never commit; the service layer owns transactions.
"""

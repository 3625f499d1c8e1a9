"""Use cases called by pages and the CLI: each owns its transaction (compute -> persist -> audit log).

``core``: tracked runs, result keys, model handles, predictions, datasets and the model registry;
``analyses``: one package per analysis kind; ``jobs``: the job queue, its kinds and the worker;
``governance``: principals, users, sessions, identities, settings, backups and the audit trail."""

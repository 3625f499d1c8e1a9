"""Long work outside the browser request: the queue (``queue``), what each kind of job is (``kinds``, read from
the registered analyses), the worker that claims and runs jobs (``worker``) and its Ray executor."""

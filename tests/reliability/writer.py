"""A worker process for the concurrency test: explains a reference set and logs many events."""

import sys

from audit.services.analyses.explanations.service import explain_reference_set
from storage import auditlog
from storage.db import transaction

method, n_events = sys.argv[1], int(sys.argv[2])
explain_reference_set("tiny", "1", "ref", methods=[method], batch_size=2, options={"ig_steps": 4})
for i in range(n_events):
    with transaction() as s:
        auditlog.append(s, actor=f"worker-{method}", action="test.event", subject=str(i))
print("ok")

"""RQ jobs and the worker process. Jobs take ids, open their own session and commit."""

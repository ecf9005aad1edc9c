"""The notification engine: what happens behind the API once a request is accepted, run on the job queue
(`clarion.jobs`). Bulk operations live in `bulk.py`."""

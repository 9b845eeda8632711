"""The Celery app and tasks (distributed mode): thin adapters over pipeline/."""

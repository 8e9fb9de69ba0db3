"""The transactional outbox (STYLE §17): side effects (mail; webhooks next) leave a request as
rows written in its transaction, and a worker in each instance delivers them, retrying."""

"""Outbound deliveries: files written whole into a local or SFTP folder, and a webhook push.

The encoding of a feed's rows (`encode.py`: CSV and JSON Lines with a manifest carrying the
sequence number and content hashes), where whole files go (`folders.py`: written under a
temporary name, then renamed) and the webhook (`webhook.py`: idempotency key, retries with
backoff). What was delivered, and what changed since, is the staging database's
(`staging_models/outbound.py`). The format: docs/status_feedback.md.
"""

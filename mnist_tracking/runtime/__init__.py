"""The process a job runs in: its Hydra job, the Keras backend and threads, the user's cache, secrets kept out of
logs, and the speed-ups that rely on other libraries' internals (one switch turns them off)."""

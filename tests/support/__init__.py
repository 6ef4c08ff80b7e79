"""Test infrastructure shared by pytest fixtures and ``bench/`` scripts.

Plain Python (no pytest import): test CAs (:mod:`.certs`), a fake SaaS origin (:mod:`.origin`),
a real Squid forward proxy (:mod:`.squid`), a throwaway PostgreSQL (:mod:`.postgres`), the fake
host names they agree on (:mod:`.names`) and loopback port helpers (:mod:`.ports`).
Everything listens on and talks to loopback only.
"""

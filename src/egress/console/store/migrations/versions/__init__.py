"""The console store's migration scripts, oldest first."""

"""The admin console (`egress console`)."""

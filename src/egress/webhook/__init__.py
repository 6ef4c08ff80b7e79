"""The admission webhook: proxy variables, trust and settings injected into pods."""

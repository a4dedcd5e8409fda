"""Simulated PSPs (Paymaxis-like, Sticpay-like) and a merchant receiver, for demo and tests."""

"""Verified payouts: money sent from the merchant's payout account to a payee, with their own
status machine, audit trail and one writer (`writer.py`)."""

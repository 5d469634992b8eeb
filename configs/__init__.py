"""Shipped YAML recipes (training configs and procedure profiles), installed as package data."""

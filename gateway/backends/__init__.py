"""Storage backends behind the SheetsBackend protocol."""

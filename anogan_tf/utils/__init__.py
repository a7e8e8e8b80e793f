"""Files written atomically, locks, and test-only fault injection."""

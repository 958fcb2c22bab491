"""What a run measures: NIST 1:N metrics, the ladder of gallery sizes, the
national-scale projection, recall of approximate search, chance pairings."""

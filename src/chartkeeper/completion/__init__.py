"""Chart completion: deficiency analysis, physician work, delinquency (docs/user-guide/chart-completion.md)."""

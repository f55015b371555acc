"""Example functions: the word count (split, sum) and the identity function."""

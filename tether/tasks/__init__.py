"""The invoke layer: each module holds the tasks of one area; they parse flags and call operations."""

"""Data layer: raw sources (mirror, download, checksums), per-dataset cleaning, Great Expectations
validation, and the train/valid/test Parquet splits every later step reads."""

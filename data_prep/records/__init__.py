"""Records and LMDBs: Datum bytes (``datum``), LMDB sets written atomically (``lmdb_io``), one
split's files and normalisation (``split``), the build from a dataset (``build``), build-time
augmentation (``augment``), splits merged from several folders (``merge``)."""

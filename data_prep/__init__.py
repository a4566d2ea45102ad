"""Dataset readers, the cube crop, LMDB writers and the synthetic NYU-format generator."""

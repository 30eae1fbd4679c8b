"""Features: pLM loading (pretrained), extraction, co-evolution maps, true contacts, the HDF5 store."""

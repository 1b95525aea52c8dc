/* backend_cdb.c - placeholder until written */

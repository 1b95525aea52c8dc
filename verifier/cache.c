/* cache.c - placeholder until written */

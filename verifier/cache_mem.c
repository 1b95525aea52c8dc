/* cache_mem.c - placeholder until written */

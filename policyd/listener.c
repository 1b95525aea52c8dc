/* listener.c - placeholder until written */

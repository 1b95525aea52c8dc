/* verifier.c - placeholder until written */

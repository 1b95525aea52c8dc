/* cache_redis.c - placeholder until written */

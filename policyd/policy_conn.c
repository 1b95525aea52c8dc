/* policy_conn.c - placeholder until written */

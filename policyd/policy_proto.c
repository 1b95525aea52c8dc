/* policy_proto.c - placeholder until written */

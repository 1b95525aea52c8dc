/* policy_action.c - placeholder until written */
